//! Pure domain types: identifiers, timestamps, storage classes, task states, the bucket schema,
//! blob inputs and object filters. Nothing here does I/O, so everything is unit-tested directly.

pub mod blob;
pub mod filter;
pub mod schema;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A validation failure that names the offending field by its dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Returns `prefix` followed by `len` random alphanumeric characters, e.g. `bkt_3kf9…`.
pub fn new_id(prefix: &str, len: usize) -> String {
    let tail: String = rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect();
    format!("{prefix}{tail}")
}

/// Returns `prefix` followed by `len` random lowercase hex digits, e.g. `wh_0a1b…`.
pub fn new_hex_id(prefix: &str, len: usize) -> String {
    let mut rng = rand::rng();
    let tail: String =
        (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect();
    format!("{prefix}{tail}")
}

/// Lower-case hexadecimal of `bytes`, as digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time as the RFC 3339 string every record carries, always with microseconds and
/// `Z`, so that string order is time order.
pub fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// Formats a time the way [`now`] does.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The object-storage tier of a bucket, as the contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageClass {
    #[default]
    Standard,
    Nearline,
    Coldline,
    Archive,
}

impl StorageClass {
    pub const ALL: [StorageClass; 4] =
        [Self::Standard, Self::Nearline, Self::Coldline, Self::Archive];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Nearline => "nearline",
            Self::Coldline => "coldline",
            Self::Archive => "archive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The S3 `x-amz-storage-class` value of this class.
    ///
    /// This block is the one place where classes meet provider names; the blob layer reads its
    /// names from here and nowhere else.
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Nearline => "STANDARD_IA",
            Self::Coldline => "GLACIER_IR",
            Self::Archive => "GLACIER",
        }
    }

    /// The Google Cloud Storage `storageClass` value of this class.
    pub fn gcs_name(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Nearline => "NEARLINE",
            Self::Coldline => "COLDLINE",
            Self::Archive => "ARCHIVE",
        }
    }

    /// The Azure Blob `x-ms-access-tier` value of this class.
    pub fn azure_tier(self) -> &'static str {
        match self {
            Self::Standard => "Hot",
            Self::Nearline => "Cool",
            Self::Coldline => "Cold",
            Self::Archive => "Archive",
        }
    }

    /// The class an S3 storage class name stands for. Names outside the mapping (for example
    /// `DEEP_ARCHIVE`) have no class here, because sluice never writes them.
    pub fn from_s3_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.s3_name().eq_ignore_ascii_case(name))
    }

    /// The class a Google Cloud Storage class name stands for.
    pub fn from_gcs_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.gcs_name().eq_ignore_ascii_case(name))
    }

    /// The class an Azure access tier stands for.
    pub fn from_azure_tier(tier: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.azure_tier().eq_ignore_ascii_case(tier))
    }
}

/// The contract's `TaskStatusEnum`, limited to the values sluice's tasks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Pending,
    InProgress,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Pending,
        Self::InProgress,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether the task has finished and will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

/// The kinds of task sluice records, named by the contract's `TaskType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    NamespaceDelete,
    BucketDelete,
    UploadConfirm,
    UploadBatchConfirm,
    /// Moving a bucket's stored blobs to a new storage class. The contract has no task type of
    /// its own for this; `materialize` is the generic one, and clients see the same value.
    Retier,
    /// Processing a submitted batch.
    BatchProcess,
}

impl TaskType {
    pub const ALL: [TaskType; 6] = [
        Self::NamespaceDelete,
        Self::BucketDelete,
        Self::UploadConfirm,
        Self::UploadBatchConfirm,
        Self::Retier,
        Self::BatchProcess,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NamespaceDelete => "api_namespaces_delete",
            Self::BucketDelete => "api_buckets_delete",
            Self::UploadConfirm => "api_buckets_uploads_confirm",
            Self::UploadBatchConfirm => "api_buckets_uploads_batch_confirm",
            Self::Retier => "materialize",
            Self::BatchProcess => "api_buckets_batches_process",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Every `TaskStatusEnum` value the contract defines; list filters accept any of them.
pub const TASK_STATUS_VALUES: [&str; 16] = [
    "PENDING",
    "QUEUED",
    "IN_PROGRESS",
    "PROCESSING",
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "CANCELED",
    "INTERRUPTED",
    "UNKNOWN",
    "SKIPPED",
    "DRAFT",
    "ACTIVE",
    "ARCHIVED",
    "SUSPENDED",
    "DEACTIVATED",
];

/// Every `TaskType` value the contract defines; list filters accept any of them.
pub const TASK_TYPE_VALUES: [&str; 38] = [
    "api_namespaces_create",
    "api_namespaces_delete",
    "api_namespaces_snapshot_create",
    "api_namespaces_snapshot_restore",
    "api_namespaces_migrations_run",
    "api_buckets_objects_create",
    "api_buckets_delete",
    "api_buckets_batches_process",
    "api_buckets_batches_submit",
    "api_buckets_uploads_create",
    "api_buckets_uploads_confirm",
    "api_buckets_uploads_batch_confirm",
    "api_collections_documents_create",
    "api_collections_documents_bulk_update",
    "api_collections_documents_bulk_delete",
    "api_collections_reembed",
    "api_collections_extraction_artifacts",
    "api_taxonomies_create",
    "api_taxonomies_execute",
    "api_taxonomies_materialize",
    "api_evaluations_run",
    "api_evaluations_dataset_create",
    "api_retrievers_publish",
    "api_manifest_apply",
    "api_retrievers_execute",
    "api_collections_export",
    "api_collections_trigger",
    "engine_feature_extractor_run",
    "engine_inference_run",
    "engine_object_processing",
    "engine_cluster_build",
    "thumbnail",
    "video_segment",
    "audio_segment",
    "converted_video",
    "materialize",
    "plugin_custom",
    "model_custom",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id("bkt_", 12);
        assert!(id.starts_with("bkt_"));
        assert_eq!(id.len(), 16);
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_id("bkt_", 12), id);

        let wh = new_hex_id("wh_", 16);
        assert_eq!(wh.len(), 19);
        assert!(wh[3..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn timestamps_sort_as_strings_and_parse_back() {
        let a = format_time(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        assert_eq!(a, "2023-11-14T22:13:20.000000Z");
        let b = now();
        assert!(b > a);
        assert!(parse_time(&b).is_some());
    }

    #[test]
    fn enums_round_trip_their_wire_names() {
        for class in StorageClass::ALL {
            assert_eq!(StorageClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(StorageClass::parse("STANDARD"), None);
        for status in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TaskStatus::parse("CANCELLED"), None);
        assert!(TaskStatus::Canceled.is_terminal());
        assert!(!TaskStatus::InProgress.is_terminal());
    }
}
