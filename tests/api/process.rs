//! The `parley` binary as a process: configuration errors, the CLI commands, and graceful
//! shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestDb, parley_command, settings_env, spawn_app_on, test_settings};

fn run(env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let out = parley_command(&env)
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_stops_the_process_with_a_message_naming_the_setting() {
    let cases: &[(&str, &str)] = &[
        ("PARLEY_LISTEN", "nowhere"),
        ("PARLEY_DATABASE_URL", "mysql://localhost/x"),
        ("PARLEY_SIGNUP", "maybe"),
        ("PARLEY_MASTER_KEY", "dG9vIHNob3J0"),
        ("PARLEY_JWT_SECRET", "%%%"),
        ("PARLEY_PUBLIC_URL", "not a url"),
        ("PARLEY_WHATSAPP_GRAPH_URL", "ftp://graph"),
        ("PARLEY_LOG_FORMAT", "xml"),
        ("PARLEY_SHUTDOWN_TIMEOUT_SECS", "soon"),
        ("PARLEY_LISTNE", "127.0.0.1:1"),
    ];
    for (name, value) in cases {
        let (code, stderr) = run(&[(name, value)], &["migrate"]);
        assert_eq!(code, 2, "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
        assert!(stderr.contains("configuration error"), "{stderr}");
    }
}

#[test]
fn a_config_file_is_read_and_its_bad_values_are_named_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("parley.toml");
    std::fs::write(&file, "signup = \"sometimes\"\n").unwrap();
    let (code, stderr) = run(&[], &["--config", file.to_str().unwrap(), "migrate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("PARLEY_SIGNUP"), "{stderr}");
    // The environment overrides the file.
    let (code, stderr) = run(
        &[
            ("PARLEY_SIGNUP", "closed"),
            (
                "PARLEY_DATABASE_URL",
                &format!("sqlite://{}/db.sqlite", dir.path().display()),
            ),
        ],
        &["--config", file.to_str().unwrap(), "migrate"],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = run(&[], &["--config", "/nonexistent/parley.toml", "migrate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
}

#[test]
fn help_describes_every_command() {
    let out = parley_command(&[]).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "worker", "migrate", "openapi", "tenant"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = parley_command(&[])
        .args(["tenant", "create", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--name") && text.contains("--email"),
        "{text}"
    );
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = parley_command(&[]).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        printed == committed,
        "openapi/openapi.json is stale: run `make openapi` and commit the result"
    );
}

#[tokio::test]
async fn tenant_create_prints_a_token_that_works_against_the_api() {
    let db = Arc::new(TestDb::new().await);
    let settings = test_settings(&db);
    let env = settings_env(&settings);
    let out = parley_command(&env)
        .args([
            "tenant",
            "create",
            "--name",
            "Acme Ltd",
            "--email",
            "Owner@Acme.example",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        token.starts_with("prl_"),
        "stdout holds only the token: {token}"
    );

    let app = spawn_app_on(db.clone(), settings).await;
    let me: Value = app
        .get("/api/v1/auth/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner");
    assert_eq!(me["email"], "owner@acme.example");

    // The same email cannot become a second tenant's owner. (The server is stopped first: two
    // processes applying migrations to one SQLite file at once is not what this checks.)
    app.stop().await.unwrap();
    let out = parley_command(&env)
        .args([
            "tenant",
            "create",
            "--name",
            "Again",
            "--email",
            "owner@acme.example",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_migrations_and_exits() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let out = parley_command(&settings_env(&settings))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = parley::store::Store::connect(&settings).await.unwrap();
    store.ready().await.unwrap();
}

/// Starts `parley serve` on a free port. Returns the child, its port, the log lines written
/// before it listened, and a channel with the lines after (a thread keeps draining stderr, so
/// the child never blocks or dies on a closed pipe).
pub fn start_server(
    env: &[(String, String)],
    dir: Option<&std::path::Path>,
) -> (
    std::process::Child,
    u16,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut env = env.to_vec();
    for (k, v) in [
        ("PARLEY_LISTEN", "127.0.0.1:0"),
        ("PARLEY_LOG_FORMAT", "json"),
        ("PARLEY_SHUTDOWN_TIMEOUT_SECS", "10"),
    ] {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v.into()));
        }
    }
    let mut cmd = parley_command(&env);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut before = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server logs its port");
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["fields"]["message"] == "listening"
        {
            break v["fields"]["port"].as_u64().unwrap() as u16;
        }
        before.push(line);
    };
    (child, port, before, rx)
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let (mut child, port, _, logs) = start_server(&settings_env(&settings), None);

    // A request whose body is still arriving when the signal comes.
    let body = br#"{"email":"nobody@example.com","password":"wrong-password"}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait until the server has begun shutting down.
    loop {
        let line = logs
            .recv_timeout(Duration::from_secs(20))
            .expect("shutdown is logged");
        if line.contains("shutting down") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // New connections are no longer accepted...
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after SIGTERM"
    );

    // ...but the request in flight completes.
    conn.write_all(&body[10..]).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 401"),
        "in-flight request got: {response:?}"
    );

    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status");
}

pub fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[tokio::test]
async fn the_default_database_and_keys_are_created_on_first_start() {
    // What `make run` does on a fresh clone: no settings at all.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, before, _logs) = start_server(&[], Some(dir.path()));
    assert!(
        before
            .iter()
            .any(|l| l.contains("PARLEY_MASTER_KEY is unset")),
        "creating the master key is logged: {before:?}"
    );
    let res = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for file in ["data/parley.db", "data/master.key", "data/jwt.key"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
}
