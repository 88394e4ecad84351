#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn requirements_pin_every_client_exactly() {
    for pkg in [
        "boto3==",
        "botocore==",
        "awscli==",
        "moto[server]==",
        "aws-encryption-sdk==",
        "cryptography==",
    ] {
        assert!(
            REQUIREMENTS.lines().any(|l| l.starts_with(pkg)),
            "{pkg} not pinned"
        );
    }
    for l in REQUIREMENTS.lines() {
        let l = l.trim();
        assert!(
            l.is_empty() || l.starts_with('#') || l.contains("=="),
            "unpinned: {l}"
        );
    }
}

#[test]
fn key_hash_separates_parts() {
    assert_ne!(fnv1a64(&["ab", "c"]), fnv1a64(&["a", "bc"]));
    assert_eq!(fnv1a64(&["x"]), fnv1a64(&["x"]));
}

#[test]
fn commands_have_a_clean_aws_environment() {
    let env = PythonEnv {
        root: PathBuf::from("/nonexistent/venv"),
    };
    let c = env.command("aws");
    // Not in the (nonexistent) venv: left to PATH.
    assert_eq!(c.get_program(), "aws");
    let envs: Vec<(String, Option<String>)> = c
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.map(|v| v.to_string_lossy().into_owned()),
            )
        })
        .collect();
    let get = |name: &str| envs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
    ] {
        assert_eq!(get(v), Some(None), "{v} not removed");
    }
    for v in ["HTTP_PROXY", "https_proxy", "NO_PROXY", "PYTHONPATH"] {
        assert_eq!(get(v), Some(None), "{v} not removed");
    }
    assert_eq!(get("AWS_CONFIG_FILE"), Some(Some("/dev/null".into())));
    assert_eq!(
        get("AWS_SHARED_CREDENTIALS_FILE"),
        Some(Some("/dev/null".into()))
    );
    assert_eq!(get("AWS_EC2_METADATA_DISABLED"), Some(Some("true".into())));
    let path = get("PATH").flatten().unwrap();
    assert!(path.starts_with("/nonexistent/venv/bin"), "{path}");

    let mut c = env.command("/bin/true");
    with_aws_credentials(&mut c, "testing", "secret", "us-east-1");
    assert_eq!(c.get_program(), "/bin/true");
    assert!(
        c.get_envs()
            .any(|(k, v)| k == "AWS_DEFAULT_REGION" && v == Some(OsStr::new("us-east-1")))
    );
}

#[test]
fn target_dir_is_found() {
    let d = target_dir().unwrap();
    assert!(d.is_absolute());
    let exe = std::env::current_exe().unwrap();
    assert!(
        std::env::var_os("CARGO_TARGET_DIR").is_some() || exe.starts_with(&d),
        "{} not under {}",
        exe.display(),
        d.display()
    );
}

#[test]
fn locks_exclude_and_stale_ones_are_taken_over() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.lock");
    let TryLock::Acquired(lock) = BuildLock::try_acquire(&p).unwrap() else {
        panic!("not acquired");
    };
    // Held by this process: a leftover as far as this process is concerned.
    assert!(matches!(
        BuildLock::try_acquire(&p).unwrap(),
        TryLock::Stale
    ));
    assert!(!p.exists());
    drop(lock);
    // A live other process (pid 1) holds it.
    fs::write(&p, "1\n").unwrap();
    assert!(matches!(
        BuildLock::try_acquire(&p).unwrap(),
        TryLock::Held(1)
    ));
    // A dead one (beyond pid_max) does not.
    fs::write(&p, "4294967295\n").unwrap();
    assert!(matches!(
        BuildLock::try_acquire(&p).unwrap(),
        TryLock::Stale
    ));
    let TryLock::Acquired(lock) = BuildLock::try_acquire(&p).unwrap() else {
        panic!("not acquired");
    };
    drop(lock);
    assert!(!p.exists());
}

#[test]
fn http_probe_fails_on_a_closed_port() {
    let port = free_port().unwrap();
    assert!(!http_get_ok(port, "/"));
}
