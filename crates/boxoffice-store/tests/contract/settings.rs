//! The SettingsStore contract: an installation-wide setting is written once and never
//! overwritten, so instances starting together on one database (SPEC §12) agree on the
//! operator token generated at first start (SPEC §1) and the dashboard's session key; and
//! `ping` answers when the database does.

use crate::fixture;

both_engines!(settings_are_written_once, |engine| async move {
    let f = fixture(engine, &[]).await;
    assert_eq!(f.store.get_setting("k").await.unwrap(), None);
    assert!(f.store.insert_setting_if_absent("k", "first").await.unwrap());
    assert!(!f.store.insert_setting_if_absent("k", "second").await.unwrap());
    assert_eq!(f.store.get_setting("k").await.unwrap().as_deref(), Some("first"));
    f.store.ping().await.unwrap();
});
