#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

/// Set in the child process of [`killed_test_process_leaves_no_server`].
const CHILD_VAR: &str = "KURA_TEST_PG_WATCHDOG_CHILD";

fn start() -> PgServer {
    PgServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `sql` with psql on `url`'s port and database; returns the unaligned output.
fn query(server: &PgServer, database: &str, sql: &str) -> io::Result<String> {
    let out = server.psql(database).args(["-At", "-c", sql]).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(io::Error::other(output_tail(&out)))
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn postgres_starts_answers_and_is_gone_after_drop() {
    let s = start();
    let port = s.port();
    assert_eq!(
        s.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    let out = Command::new(s.bin_dir().join("psql"))
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", "select 1"])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_tail(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // psql also takes the URL itself.
    let out = clean_command(s.bin_dir().join("psql"))
        .args(["-X", "-At", &s.url(), "-c", "show server_version_num"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_tail(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("15"));
    assert_eq!(query(&s, "postgres", "show fsync").unwrap(), "off");
    assert_eq!(
        query(&s, "postgres", "show listen_addresses").unwrap(),
        "127.0.0.1"
    );

    let dir = s.dir().to_path_buf();
    assert!(dir.join("data").join("PG_VERSION").is_file());
    assert!(accepts(port));
    drop(s);
    assert!(!accepts(port), "port {port} still accepts connections");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn postgres_two_servers_with_their_own_databases() {
    let (a, b) = (start(), start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let url = a
        .create_database("kura_one")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/kura_one", a.port())
    );
    query(
        &a,
        "kura_one",
        "create table t (x int); insert into t values (7)",
    )
    .unwrap();
    assert_eq!(query(&a, "kura_one", "select x from t").unwrap(), "7");
    assert_eq!(query(&b, "postgres", "select 1").unwrap(), "1");
    assert!(query(&b, "kura_one", "select 1").is_err());
    assert!(a.create_database("kura_one").is_err());
    assert!(a.create_database("no\"pe").is_err());
    assert!(a.create_database("").is_err());
    let (pa, da) = (a.port(), a.dir().to_path_buf());
    a.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(!accepts(pa));
    assert!(!da.exists());
    assert_eq!(query(&b, "postgres", "select 2").unwrap(), "2");
}

/// The child of [`postgres_killed_test_process_leaves_no_server`]: starts a server,
/// prints its port and directory, and waits to be killed. Does nothing in a normal run.
#[test]
fn postgres_watchdog_child() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let s = start();
    println!("KURA_PG {} {}", s.port(), s.dir().display());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn postgres_killed_test_process_leaves_no_server() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "postgres::tests::postgres_watchdog_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        // libtest may print the test's name on the same line first.
        .find_map(|l| l.split_once("KURA_PG ").map(|(_, rest)| rest.to_owned()));
    let Some(line) = line else {
        let _ = child.kill();
        let status = child.wait().unwrap();
        panic!("the child test ({status}) never reported its server");
    };
    let mut words = line.split_whitespace();
    let port: u16 = words.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(words.next().unwrap());
    assert!(accepts(port));
    // SIGKILL: no destructor runs in the child.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (accepts(port) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!accepts(port), "the killed test's server still runs");
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn postgres_helpers() {
    assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    let uid = effective_uid().unwrap();
    let out = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uid.to_string());
    let parent = tempfile::tempdir().unwrap();
    let long = parent.path().join("x".repeat(120));
    fs::create_dir(&long).unwrap();
    let err = PgServer::start_in(&long).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(fs::read_dir(&long).unwrap().count(), 0);
}

#[test]
fn postgres_stops_and_starts_again_on_the_same_port_with_its_data() {
    let s = start();
    let port = s.port();
    let url = s.create_database("kept").unwrap_or_else(|e| panic!("{e}"));
    query(
        &s,
        "kept",
        "create table t (x int); insert into t values (42)",
    )
    .unwrap();
    s.stop_server().unwrap_or_else(|e| panic!("{e}"));
    assert!(!accepts(port), "port {port} still accepts connections");
    assert!(query(&s, "kept", "select 1").is_err());
    s.start_server().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.port(), port);
    assert_eq!(s.database_url("kept"), url);
    assert_eq!(query(&s, "kept", "select x from t").unwrap(), "42");
    let dir = s.dir().to_path_buf();
    s.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(!accepts(port));
    assert!(!dir.exists());
}

#[test]
fn shared_databases_are_distinct_on_one_server() {
    let (a, url_a) = shared_database("shared").unwrap();
    let (b, url_b) = shared_database("shared").unwrap();
    assert_ne!(a, b);
    assert!(
        a.starts_with(&format!("shared_{}_", std::process::id())),
        "{a}"
    );
    let server = shared_server().unwrap();
    assert_eq!(url_a, server.database_url(&a));
    assert_eq!(url_b, server.database_url(&b));
    for name in [&a, &b] {
        assert_eq!(
            query(server, name, "SELECT current_database()").unwrap(),
            *name
        );
    }
}
