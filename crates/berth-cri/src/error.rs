//! The one mapping of berth's errors onto gRPC status codes.

use berth_image::ImageError;
use berth_runtime::RuntimeError;
use berth_store::StoreError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

impl CriError {
    pub fn code(&self) -> Code {
        match self {
            CriError::Runtime(e) => runtime_code(e),
            CriError::Image(e) => image_code(e),
            CriError::Store(e) => store_code(e),
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Internal(_) => Code::Internal,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }
}

fn runtime_code(e: &RuntimeError) -> Code {
    match e {
        RuntimeError::NotFound { .. } => Code::NotFound,
        RuntimeError::Ambiguous { .. } | RuntimeError::InvalidArgument(_) => Code::InvalidArgument,
        RuntimeError::FailedPrecondition(_)
        | RuntimeError::Spec(berth_runtime::spec::SpecError::MissingController { .. }) => {
            Code::FailedPrecondition
        }
        RuntimeError::Store(s) => store_code(s),
        RuntimeError::StopTimeout { .. } => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::NotFound(_) => Code::NotFound,
        ImageError::Reference(_) => Code::InvalidArgument,
        ImageError::Store(s) => store_code(s),
        ImageError::Registry(_) => Code::Unknown,
        _ => Code::Internal,
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::NameInUse { .. } => Code::AlreadyExists,
        e if e.is_not_found() => Code::NotFound,
        _ => Code::Internal,
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        let code = e.code();
        if matches!(code, Code::Internal | Code::Unknown) {
            tracing::warn!(error = %e, "CRI call failed");
        }
        Status::new(code, e.to_string())
    }
}
