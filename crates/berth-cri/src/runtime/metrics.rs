//! ListMetricDescriptors and ListPodSandboxMetrics: berth exports no CRI
//! metrics of its own yet, and kubelet takes empty lists as that.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn list_metric_descriptors(
        &self,
        _: v1::ListMetricDescriptorsRequest,
    ) -> Result<v1::ListMetricDescriptorsResponse, CriError> {
        Ok(v1::ListMetricDescriptorsResponse { descriptors: vec![] })
    }

    pub(crate) fn list_pod_sandbox_metrics(
        &self,
        _: v1::ListPodSandboxMetricsRequest,
    ) -> Result<v1::ListPodSandboxMetricsResponse, CriError> {
        Ok(v1::ListPodSandboxMetricsResponse { pod_metrics: vec![] })
    }
}
