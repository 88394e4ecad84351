#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

#[test]
fn tokens_live_in_a_directory_of_their_own() {
    let hsm = SoftHsm::new().unwrap();
    assert!(hsm.module().is_file());
    let conf = fs::read_to_string(hsm.conf()).unwrap();
    assert!(conf.contains(&format!(
        "directories.tokendir = {}",
        hsm.dir().join("tokens").display()
    )));
    assert_eq!(hsm.env(), vec![(CONF_VAR.into(), hsm.conf().into())]);
    assert!(hsm.token_labels().unwrap().is_empty());
    hsm.init_token("kura-a", "1234", "5678").unwrap();
    hsm.init_token("kura-b", "1234", "5678").unwrap();
    // Slots follow the order of the token directories (random names).
    let mut labels = hsm.token_labels().unwrap();
    labels.sort();
    assert_eq!(labels, ["kura-a", "kura-b"]);
    assert_eq!(fs::read_dir(hsm.dir().join("tokens")).unwrap().count(), 2);

    let other = SoftHsm::new().unwrap();
    assert_ne!(other.dir(), hsm.dir());
    assert!(other.token_labels().unwrap().is_empty());

    let dir = hsm.dir().to_path_buf();
    drop(hsm);
    assert!(!dir.exists());
}

#[test]
fn a_failed_init_says_what_ran() {
    let hsm = SoftHsm::new().unwrap();
    // An empty PIN is refused by softhsm2-util (4 to 255 characters).
    let e = hsm.init_token("kura-x", "", "5678").unwrap_err();
    assert!(
        e.to_string()
            .contains("softhsm2-util --init-token --free --label kura-x"),
        "{e}"
    );
}
