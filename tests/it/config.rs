//! Configuration layering, refusal of unknown keys and bad values, and secret redaction.

use std::path::{Path, PathBuf};

use engram::config::{Config, ConfigError, Sources};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn repo_defaults() -> PathBuf {
    crate::support::crate_dir().join("config/default.toml")
}

#[test]
fn layers_apply_in_order_defaults_deployed_file_user_file_environment() {
    let dir = tempfile::tempdir().unwrap();
    let deployed = write(
        dir.path(),
        "default.toml",
        "[chat]\nedit_interval_ms = 1500\n[store]\nurl = \"sqlite://deployed.db\"\n",
    );
    let user = write(
        dir.path(),
        "engram.toml",
        "[chat]\nedit_interval_ms = 2000\n[http]\nlisten = \"0.0.0.0:9090\"\n",
    );
    let mut sources = Sources {
        deployed_defaults: Some(deployed),
        file: Some(user),
        env: Vec::new(),
    };
    let config = Config::load(&sources).unwrap();
    assert_eq!(
        config.chat.edit_interval_ms, 2000,
        "the user file beats the deployed defaults"
    );
    assert_eq!(
        config.store.url.expose(),
        "sqlite://deployed.db",
        "untouched keys fall through"
    );
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9090");
    assert_eq!(config.chat.max_concurrent_answers, 64, "built-in default");

    sources.env = env(&[
        ("ENGRAM__CHAT__EDIT_INTERVAL_MS", "2500"),
        ("ENGRAM__SLACK__MODE", "http"),
    ]);
    let config = Config::load(&sources).unwrap();
    assert_eq!(
        config.chat.edit_interval_ms, 2500,
        "the environment beats every file"
    );
    assert_eq!(config.slack.mode, engram::config::SlackMode::Http);
}

#[test]
fn the_shipped_default_file_has_every_interface_key() {
    let text = std::fs::read_to_string(repo_defaults()).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let required = [
        ("store", "url"),
        ("index", "kind"),
        ("index", "qdrant_url"),
        ("index", "collection"),
        ("llm", "base_url"),
        ("llm", "api_key"),
        ("llm", "model"),
        ("llm", "first_token_timeout_ms"),
        ("llm", "total_timeout_ms"),
        ("embeddings", "base_url"),
        ("embeddings", "api_key"),
        ("embeddings", "model"),
        ("embeddings", "dimensions"),
        ("discord", "token"),
        ("discord", "proxy_url"),
        ("discord", "gateway_url"),
        ("slack", "bot_token"),
        ("slack", "app_token"),
        ("slack", "signing_secret"),
        ("slack", "mode"),
        ("slack", "api_url"),
        ("http", "listen"),
        ("chat", "max_concurrent_answers"),
        ("chat", "edit_interval_ms"),
        ("ingest", "max_file_bytes"),
        ("ingest", "workers"),
        ("ingest", "extract_timeout_ms"),
        ("ingest", "extract_memory_bytes"),
    ];
    for (section, key) in required {
        assert!(
            table.get(section).and_then(|s| s.get(key)).is_some(),
            "config/default.toml lacks {section}.{key}"
        );
    }
    let sources = Sources {
        deployed_defaults: Some(repo_defaults()),
        ..Sources::default()
    };
    let config = Config::load(&sources).unwrap();
    assert_eq!(config.store.url.expose(), "sqlite://data/engram.db");
    assert_eq!(config.ingest.max_file_bytes, 52_428_800);
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "engram.toml",
        "[chat]\nmax_concurent_answers = 8\n",
    );
    let error = Config::load(&Sources {
        file: Some(file),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::UnknownKey { .. }), "{error:?}");
    assert!(
        error.to_string().contains("chat.max_concurent_answers"),
        "{error}"
    );
    assert!(error.to_string().contains("engram.toml"), "{error}");

    let file = write(dir.path(), "section.toml", "[chats]\nx = 1\n");
    let error = Config::load(&Sources {
        file: Some(file),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("`chats`"), "{error}");

    let error = Config::load(&Sources {
        env: env(&[("ENGRAM__DISCORD__TOKN", "x")]),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("ENGRAM__DISCORD__TOKN"),
        "{error}"
    );
}

#[test]
fn invalid_values_are_refused_with_the_key() {
    let cases = [
        (
            "[chat]\nmax_concurrent_answers = \"many\"\n",
            "chat.max_concurrent_answers",
        ),
        (
            "[chat]\nmax_concurrent_answers = 0\n",
            "chat.max_concurrent_answers",
        ),
        ("[slack]\nmode = \"carrier-pigeon\"\n", "slack.mode"),
        ("[index]\nkind = \"faiss\"\n", "index.kind"),
        ("[http]\nlisten = \"localhost\"\n", "http.listen"),
        ("[store]\nurl = \"mysql://x\"\n", "store.url"),
        ("[llm]\nbase_url = \"api.openai.com\"\n", "llm.base_url"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in cases {
        let file = write(dir.path(), "engram.toml", text);
        let error = Config::load(&Sources {
            file: Some(file),
            ..Sources::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains(key), "{text:?} → {error}");
    }
    let error = Config::load(&Sources {
        env: env(&[("ENGRAM__INGEST__WORKERS", "two")]),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("ingest.workers"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "broken.toml", "[chat\n");
    let error = Config::load(&Sources {
        file: Some(file),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("broken.toml"), "{error}");
    let missing = Config::load(&Sources {
        file: Some(dir.path().join("nope.toml")),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(missing.to_string().contains("nope.toml"), "{missing}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = Config::load(&Sources {
        env: env(&[
            ("ENGRAM__DISCORD__TOKEN", "discord-secret-value"),
            ("ENGRAM__LLM__API_KEY", "sk-llm-secret-value"),
            ("ENGRAM__EMBEDDINGS__API_KEY", "sk-embed-secret-value"),
            ("ENGRAM__SLACK__BOT_TOKEN", "xoxb-secret-value"),
            ("ENGRAM__SLACK__APP_TOKEN", "xapp-secret-value"),
            ("ENGRAM__SLACK__SIGNING_SECRET", "signing-secret-value"),
            (
                "ENGRAM__STORE__URL",
                "postgres://engram:db-password-value@db:5432/engram",
            ),
        ]),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(config.discord.token.expose(), "discord-secret-value");
    let shown = format!("{config:?} {:#?}", config);
    for secret in [
        "discord-secret-value",
        "sk-llm-secret-value",
        "sk-embed-secret-value",
        "xoxb-secret-value",
        "xapp-secret-value",
        "signing-secret-value",
        "db-password-value",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(shown.contains("[redacted]"));
}

#[test]
fn a_syntax_error_names_the_line_and_a_missing_file_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "engram.toml",
        "[store]\nurl = \"sqlite://x.db\"\n\n[chat]\nedit_interval_ms = = 5\n",
    );
    let error = Config::load(&Sources {
        file: Some(broken),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
    assert!(error.to_string().contains("line 5, column"), "{error}");

    let missing = dir.path().join("nope.toml");
    let error = Config::load(&Sources {
        file: Some(missing),
        ..Sources::default()
    })
    .unwrap_err();
    let shown = format!("{:#}", anyhow::Error::new(error));
    assert!(shown.contains("nope.toml: no such file"), "{shown}");
    assert_eq!(shown.matches("such file").count(), 1, "{shown}");
}

#[test]
fn the_listener_accepts_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "engram.toml",
        "[http]\nlisten = \"localhost:8080\"\n",
    );
    let config = Config::load(&Sources {
        file: Some(file),
        ..Sources::default()
    })
    .unwrap();
    assert!(
        config.http.listen.ip().is_loopback(),
        "{}",
        config.http.listen
    );
    assert_eq!(config.http.listen.port(), 8080);
    let bad = Config::load(&Sources {
        env: env(&[("ENGRAM__HTTP__LISTEN", "localhost")]),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(bad.to_string().contains("http.listen"), "{bad}");
}

#[test]
fn list_keys_are_set_from_the_environment_as_json_or_comma_separated() {
    let config = Config::load(&Sources {
        env: env(&[
            ("ENGRAM__SLACK__ADMINS", "U1, U2"),
            (
                "ENGRAM__LLM__PRICES",
                r#"[{"model": "llama3", "prompt_usd_per_mtok": 0, "completion_usd_per_mtok": 0.5}]"#,
            ),
        ]),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(config.slack.admins, ["U1", "U2"]);
    assert_eq!(config.llm.prices.len(), 1);
    assert_eq!(config.llm.prices[0].model, "llama3");
    assert_eq!(config.llm.cost_micros("llama3", 0, 2_000_000), 1_000_000);

    let json = Config::load(&Sources {
        env: env(&[("ENGRAM__SLACK__ADMINS", r#"["U3"]"#)]),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(json.slack.admins, ["U3"]);
    let empty = Config::load(&Sources {
        env: env(&[("ENGRAM__SLACK__ADMINS", "")]),
        ..Sources::default()
    })
    .unwrap();
    assert!(empty.slack.admins.is_empty());

    let bad = Config::load(&Sources {
        env: env(&[("ENGRAM__LLM__PRICES", "[{not json")]),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(bad.to_string().contains("llm.prices"), "{bad}");
}
