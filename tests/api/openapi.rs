use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{Backend, start};

/// `/openapi.json` is `openapi.yaml`, and every operation the document names is routed:
/// none answers the router's "no such route" or "method not allowed".
#[tokio::test]
async fn document_matches_the_router() {
    let s = start(Backend::Sqlite).await.unwrap();
    let yaml: Value =
        serde_norway::from_str(&std::fs::read_to_string("openapi.yaml").unwrap()).unwrap();
    let (status, served) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, yaml, "the served document is openapi.yaml");

    let mut operations = 0;
    for (path, item) in yaml["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{namespace_identifier}", "nsx")
            .replace("{bucket_identifier}", "bktx")
            .replace("{object_identifier}", "objx")
            .replace("{task_id}", "taskx")
            .replace("{upload_id}", "uplx")
            .replace("{identifier}", "whx")
            .replace("{delivery_id}", "dlvx")
            .replace("{connection_identifier}", "connx")
            .replace("{batch_id}", "btch_x")
            .replace("{collection_identifier}", "colx")
            .replace("{document_id}", "docx")
            .replace("{feature_extractor_id}", "fex_v1")
            .replace("{sync_config_id}", "syncx")
            .replace("{sync_job_id}", "syncjobx")
            .replace("{key}", "a/b");
        assert!(!concrete.contains('{'), "unmapped parameter in {path}");
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let (status, body) =
                s.call(method.clone(), &concrete, Some("nsx"), Some(serde_json::json!({}))).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(body["error"]["code"], "route_not_found", "{method} {path}");
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");
    s.stop().await;
}
