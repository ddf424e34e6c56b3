//! The example manifests in `deploy/` agree with the server: the probes' paths and gRPC
//! service answer on a running server, and every port is the one `serve` listens on. The
//! replica setup shares its PostgreSQL URL from a Secret, keeps its index on an `emptyDir`, and
//! its probes say ready only once caught up while liveness holds meanwhile.

use mathrank_engine::{Engine, Limits};
use mathrank_server::ServeOptions;
use mathrank_tests::{TestServer, sample_index, workspace};
use serde::Deserialize as _;
use serde_json::Value;

fn manifests() -> Vec<Value> {
    manifests_of("deploy/kubernetes.yaml")
}

fn manifests_of(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace().join(path)).unwrap();
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

fn args_of(container: &Value) -> Vec<String> {
    container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    &args[args.iter().position(|a| a == name).unwrap_or_else(|| panic!("{name} in {args:?}")) + 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_store_from_a_secret_rebuild_on_an_empty_dir_and_are_ready_once_caught_up() {
    let docs = manifests_of("deploy/replicas.yaml");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2, "replicas");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_array().unwrap();
    let store = env.iter().find(|e| e["name"] == "MATHRANK_STORE").expect("MATHRANK_STORE");
    let secret_ref = &store["valueFrom"]["secretKeyRef"];
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_ref["name"])
        .expect("the Secret MATHRANK_STORE names");
    let url = secret["stringData"][secret_ref["key"].as_str().unwrap()].as_str().expect("the key it names");
    assert!(mathrank_store::is_postgres_url(url), "{url}");
    assert!(env.iter().any(|e| e["name"] == "MATHRANK_WRITE_TOKEN" && e["valueFrom"]["secretKeyRef"].is_object()));

    // The index directory is on an emptyDir volume: derived data, rebuilt from the store.
    let args = args_of(container);
    let index = flag(&args, "--index");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| index.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("a volume under --index");
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert!(volume["emptyDir"].is_object(), "{volume}");
    let port: u64 = flag(&args, "--addr").rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port));

    // Readiness and startup wait for the catch-up; liveness does not.
    let path_of = |probe: &str| container[probe]["httpGet"]["path"].as_str().unwrap().to_owned();
    assert_eq!(path_of("readinessProbe"), "/health");
    assert_eq!(path_of("startupProbe"), "/health");
    let startup = &container["startupProbe"];
    let startup_seconds = startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
    assert!(startup_seconds >= 15 * 60, "a full-size build from the store fits the startup probe");
    let loading = TestServer::start(None, ServeOptions::default()).await;
    let client = reqwest::Client::new();
    let status = |server: &TestServer, path: String| {
        let request = client.get(server.url(&path));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(&loading, path_of("readinessProbe")).await, 503, "not ready before caught up");
    assert!(status(&loading, path_of("livenessProbe")).await.is_success(), "alive meanwhile");

    for service in docs.iter().filter(|d| d["kind"] == "Service") {
        assert_eq!(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]);
    }
    // A replica of a real store, caught up: every probe passes.
    let Some(cluster) = mathrank_pgtest::shared() else { return };
    let url = cluster.create_database().unwrap();
    let (_dir, engine) =
        tokio::task::spawn_blocking(move || mathrank_tests::replica_engine(&url, Limits::default())).await.unwrap();
    let replica = TestServer::start(Some(engine), ServeOptions::default()).await;
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(status(&replica, path_of(probe)).await.is_success(), "{probe}");
    }
}
