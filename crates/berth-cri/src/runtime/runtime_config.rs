//! RuntimeConfig and UpdateRuntimeConfig.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn runtime_config(
        &self,
        _: v1::RuntimeConfigRequest,
    ) -> Result<v1::RuntimeConfigResponse, CriError> {
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: v1::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    /// kubelet sends the node's pod CIDR; berth's CNI configs carry their
    /// own ranges, so it is only noted.
    pub(crate) fn update_runtime_config(
        &self,
        req: v1::UpdateRuntimeConfigRequest,
    ) -> Result<v1::UpdateRuntimeConfigResponse, CriError> {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(pod_cidr = %cidr, "runtime config updated");
        Ok(v1::UpdateRuntimeConfigResponse {})
    }
}
