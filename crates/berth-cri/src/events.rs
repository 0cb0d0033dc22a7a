//! GetContainerEvents: the calls that change a container publish here;
//! each subscriber gets what happens after it subscribed.

use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::service::CriService;
use crate::v1;
use crate::v1::ContainerEventType;

impl CriService {
    /// Publishes an event about container `id` (with its status, when it
    /// still has one); nobody listening is fine.
    pub(crate) fn publish(&self, id: &str, kind: ContainerEventType) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let status = self.container_status_of(id).ok();
        let pod_status = status
            .as_ref()
            .and_then(|(rec, _)| self.sandbox_status_of(&rec.pod_id).ok());
        let event = v1::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: crate::convert::now_nanos(),
            pod_sandbox_status: pod_status,
            containers_statuses: status.map(|(_, s)| s).into_iter().collect(),
        };
        let _ = self.events.send(event);
    }

    pub(crate) fn event_stream(
        &self,
    ) -> std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<v1::ContainerEventResponse, tonic::Status>> + Send>,
    > {
        let rx = self.events.subscribe();
        let mut closing = self.closing.subscribe();
        let closed = async move {
            let _ = closing.wait_for(|c| *c).await;
        };
        Box::pin(
            BroadcastStream::new(rx)
                .take_until(closed)
                .filter_map(|r| async move {
                    match r {
                        Ok(ev) => Some(Ok(ev)),
                        Err(e) => {
                            // A slow subscriber misses events rather than stalling the calls.
                            tracing::warn!("container events: {e}");
                            None
                        }
                    }
                }),
        )
    }
}
