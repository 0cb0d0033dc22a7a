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
        let doc = oci_resources(&r, berth_runtime::spec::SwapHost::detected())?;
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
        // A new limit comes with its swap: 0 is none.
        rec.memory_swap = r.memory_swap_limit_in_bytes;
    }
    for (k, v) in &r.unified {
        rec.unified.insert(k.clone(), v.clone());
    }
}

/// The OCI `linux.resources` document of the CRI resources; zero means
/// "leave as is", as runc's update reads absent fields — except the swap of
/// a new memory limit, where zero is no swap, as at creation.
fn oci_resources(
    r: &v1::LinuxContainerResources,
    swap_host: berth_runtime::spec::SwapHost,
) -> Result<serde_json::Value, CriError> {
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
    let limit = r.memory_limit_in_bytes;
    let swap = berth_runtime::spec::oci_swap(limit, r.memory_swap_limit_in_bytes, swap_host)
        .map_err(|e| CriError::InvalidArgument(format!("memory_swap_limit_in_bytes: {e}")))?;
    if let Some(swap) = swap {
        memory.insert("swap".into(), swap.into());
    }
    let mut unified = r.unified.clone();
    if let Some((file, value)) = berth_runtime::spec::v2_swap_files(limit, swap, swap_host) {
        unified.entry(file.into()).or_insert_with(|| value.into());
    }
    let mut doc = serde_json::json!({ "cpu": cpu, "memory": memory });
    if !unified.is_empty() {
        doc["unified"] = serde_json::json!(unified);
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_runtime::spec::SwapHost;

    const V1: SwapHost = SwapHost {
        cgroup_v2: false,
        accounting: true,
    };
    const V2: SwapHost = SwapHost {
        cgroup_v2: true,
        accounting: true,
    };

    #[test]
    fn zero_fields_are_left_out() {
        let doc = oci_resources(
            &v1::LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                ..Default::default()
            },
            V1,
        )
        .unwrap();
        assert_eq!(doc["memory"]["limit"], 64 << 20);
        assert_eq!(doc["cpu"]["quota"], 50_000);
        assert!(doc["cpu"].get("shares").is_none());
        assert!(doc.get("unified").is_none());
        let doc = oci_resources(
            &v1::LinuxContainerResources {
                cpu_shares: 512,
                ..Default::default()
            },
            V1,
        )
        .unwrap();
        assert!(doc["memory"].get("swap").is_none(), "{doc}");
    }

    #[test]
    fn a_new_memory_limit_comes_without_swap_unless_asked() {
        let limit = |swap, host| {
            oci_resources(
                &v1::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    memory_swap_limit_in_bytes: swap,
                    ..Default::default()
                },
                host,
            )
        };
        let doc = limit(0, V1).unwrap();
        assert_eq!(doc["memory"]["swap"], 64 << 20, "{doc}");
        let doc = limit(0, V2).unwrap();
        assert_eq!(doc["memory"]["swap"], 64 << 20, "{doc}");
        assert_eq!(doc["unified"]["memory.swap.max"], "0", "{doc}");
        let doc = limit(128 << 20, V2).unwrap();
        assert_eq!(doc["memory"]["swap"], 128 << 20, "{doc}");
        assert!(doc.get("unified").is_none(), "{doc}");
        let err = limit(32 << 20, V1).unwrap_err().to_string();
        assert!(err.contains("memory_swap_limit_in_bytes"), "{err}");
    }

    #[test]
    fn cri_swap_reaches_the_model() {
        let r = crate::convert::resources(&v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 96 << 20,
            ..Default::default()
        });
        assert_eq!((r.memory_limit, r.memory_swap), (64 << 20, 96 << 20));
        let r = crate::convert::resources(&v1::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        });
        assert_eq!(r.memory_swap, 0, "no swap");
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
