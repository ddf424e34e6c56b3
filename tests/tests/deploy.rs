//! The example manifests in `deploy/` agree with the server: the probes' paths and gRPC
//! service answer on a running server, and every port is the one `serve` listens on.

use mathrank_engine::{Engine, Limits};
use mathrank_server::ServeOptions;
use mathrank_tests::{TestServer, sample_index, workspace};
use serde::Deserialize as _;
use serde_json::Value;

fn manifests() -> Vec<Value> {
    let text = std::fs::read_to_string(workspace().join("deploy/kubernetes.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_probes_and_ports_match_the_server() {
    let docs = manifests();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let addr = args[args.iter().position(|a| *a == "--addr").unwrap() + 1];
    let port: u64 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let api = &container["ports"][0];
    assert_eq!((api["name"].as_str(), api["containerPort"].as_u64()), (Some("api"), Some(port)));

    let server =
        TestServer::start(Some(Engine::new(sample_index(), None, Limits::default())), ServeOptions::default()).await;
    let client = reqwest::Client::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let probe = &container[probe];
        if let Some(get) = probe.get("httpGet") {
            assert_eq!(get["port"], "api", "{probe}");
            let path = get["path"].as_str().unwrap();
            let status = client.get(server.url(path)).send().await.unwrap().status();
            assert!(status.is_success(), "{path} answers {status}");
        } else {
            let grpc = &probe["grpc"];
            assert_eq!(grpc["port"].as_u64(), Some(port), "{probe}");
            let service = grpc["service"].as_str().unwrap_or_default().to_owned();
            let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
            let status = health.check(tonic_health::pb::HealthCheckRequest { service }).await.unwrap();
            assert_eq!(
                status.into_inner().status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
        }
    }
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    assert!(services.iter().any(|s| s["spec"]["clusterIP"] == "None"), "a headless Service for gRPC");
    for service in services {
        assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
        for port in service["spec"]["ports"].as_array().unwrap() {
            assert_eq!(port["targetPort"], "api");
        }
    }
}
