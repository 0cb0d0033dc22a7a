//! UpdateContainerResources: the handler's `update --resources FILE`.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn update_container_resources(
        &self,
        req: v1::UpdateContainerResourcesRequest,
    ) -> Result<v1::UpdateContainerResourcesResponse, CriError> {
        let c = self.container(&req.container_id)?;
        let Some(r) = req.linux else {
            return Ok(v1::UpdateContainerResourcesResponse {});
        };
        let file = tempfile_in(&self.runtime.options().state, &c.id)?;
        let doc = oci_resources(&r);
        std::fs::write(&file, doc.to_string())
            .map_err(|e| CriError::Internal(format!("container {}: write {}: {e}", c.id, file.display())))?;
        let result = self
            .runtime
            .handler(&c.handler)
            .map_err(CriError::from)
            .and_then(|h| h.update(&c.id, &file).map_err(|e| CriError::Runtime(e.into())));
        let _ = std::fs::remove_file(&file);
        result?;
        self.runtime
            .update_recorded_resources(&c.id, |rec| merge(rec, &r))?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }
}

fn tempfile_in(state: &std::path::Path, id: &str) -> Result<std::path::PathBuf, CriError> {
    let dir = state.join("containers").join(id);
    if !dir.is_dir() {
        return Err(CriError::FailedPrecondition(format!(
            "container {id} has no state directory: it was removed"
        )));
    }
    Ok(dir.join(format!("update-{}.json", std::process::id())))
}

/// Folds the fields the update set (non-zero ones, as [`oci_resources`]
/// reads them) into the recorded resources.
fn merge(rec: &mut berth_runtime::model::Resources, r: &v1::LinuxContainerResources) {
    if r.cpu_shares > 0 {
        rec.cpu_shares = r.cpu_shares as u64;
    }
    if r.cpu_quota != 0 {
        rec.cpu_quota = r.cpu_quota;
    }
    if r.cpu_period > 0 {
        rec.cpu_period = r.cpu_period as u64;
    }
    if !r.cpuset_cpus.is_empty() {
        rec.cpuset_cpus = r.cpuset_cpus.clone();
    }
    if !r.cpuset_mems.is_empty() {
        rec.cpuset_mems = r.cpuset_mems.clone();
    }
    if r.memory_limit_in_bytes > 0 {
        rec.memory_limit = r.memory_limit_in_bytes;
    }
    for (k, v) in &r.unified {
        rec.unified.insert(k.clone(), v.clone());
    }
}

/// The OCI `linux.resources` document of the CRI resources; zero means
/// "leave as is", as runc's update reads absent fields.
fn oci_resources(r: &v1::LinuxContainerResources) -> serde_json::Value {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), r.cpu_shares.into());
    }
    if r.cpu_quota != 0 {
        cpu.insert("quota".into(), r.cpu_quota.into());
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), r.cpu_period.into());
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), r.cpuset_cpus.clone().into());
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), r.cpuset_mems.clone().into());
    }
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), r.memory_limit_in_bytes.into());
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), r.memory_swap_limit_in_bytes.into());
    }
    let mut doc = serde_json::json!({ "cpu": cpu, "memory": memory });
    if !r.unified.is_empty() {
        doc["unified"] = serde_json::json!(r.unified);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_are_left_out() {
        let doc = oci_resources(&v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        });
        assert_eq!(doc["memory"]["limit"], 64 << 20);
        assert_eq!(doc["cpu"]["quota"], 50_000);
        assert!(doc["cpu"].get("shares").is_none());
        assert!(doc.get("unified").is_none());
    }

    #[test]
    fn merge_keeps_what_the_update_left_out() {
        let mut rec = berth_runtime::model::Resources {
            memory_limit: 32 << 20,
            cpu_shares: 512,
            ..Default::default()
        };
        merge(
            &mut rec,
            &v1::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_quota: 20_000,
                ..Default::default()
            },
        );
        assert_eq!(rec.memory_limit, 64 << 20);
        assert_eq!(rec.cpu_quota, 20_000);
        assert_eq!(rec.cpu_shares, 512);
    }
}
