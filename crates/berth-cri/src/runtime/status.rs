//! Status: the runtime is ready whenever it answers; the network when a CNI
//! network is configured.

use crate::error::CriError;
use crate::service::CriService;
use crate::v1;

impl CriService {
    pub(crate) fn status(&self, req: v1::StatusRequest) -> Result<v1::StatusResponse, CriError> {
        let runtime = v1::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        let network = match (self.network)() {
            Ok(()) => v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(message) => v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message,
            },
        };
        let opts = self.runtime.options();
        // "" is the default handler (CRI: "an empty string denotes the
        // default"); critest and kubelet look it up by that name.
        let handlers = std::iter::once(("", &opts.default_handler))
            .chain(opts.handlers.keys().map(|n| (n.as_str(), n)))
            .filter_map(|(name, handler)| {
                let features = berth_runtime::features::of(opts.handlers.get(handler)?);
                Some(v1::RuntimeHandler {
                    name: name.to_string(),
                    features: Some(v1::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: features.recursive_readonly,
                        user_namespaces: berth_runtime::userns::supported(),
                    }),
                })
            })
            .collect();
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let o = self.runtime.options();
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "root": o.root,
                    "state": o.state,
                    "defaultRuntimeHandler": o.default_handler,
                    "cgroupParent": o.cgroup_parent,
                    "streamServer": self.streams.get().map(|s| s.local_addr().to_string()),
                    // Profiles of a module the host lacks are accepted and
                    // ignored with a warning.
                    "securityModules": {
                        "apparmor": crate::convert::apparmor_enabled(),
                        "selinux": crate::convert::selinux_enabled(),
                        "seccomp": true,
                    },
                })
                .to_string(),
            );
        }
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            runtime_handlers: handlers,
            // Strict is honoured by spec::user whatever the handler.
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        })
    }
}
