//! The file's sections checked one by one; each returns what the runtime configuration
//! takes from it, and leaves its problems in the checker.

use super::*;

/// A name brygga uses as a key or a header value: 1-64 of A-Z, a-z, 0-9, '.', '_', '-'.
pub(super) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What the listener sections give: the kommun listener's address and TLS, the admin
/// listener's address, and the `af` listener (events) whole.
pub(super) type Listeners = (
    Option<SocketAddr>,
    Option<(TlsMaterial, TlsFiles)>,
    Option<SocketAddr>,
    Option<EventsSettings>,
);

/// What the AF client takes: its TLS, its secret, its retry budget.
pub(super) type AfParts = (
    Option<(TlsMaterial, TlsFiles)>,
    Option<Secret>,
    Option<Configured>,
);

impl Checker {
    /// `[gateway]`: the names brygga gives itself towards AF.
    pub(super) fn gateway(&mut self, g: &GatewayFile) {
        if !valid_id(&g.system_id) {
            self.fail(
                "gateway.system_id",
                "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'",
            );
        }
        if !ENVIRONMENTS.contains(&g.environment.as_str()) {
            self.fail(
                "gateway.environment",
                format!("must be one of {ENVIRONMENTS:?}"),
            );
        }
    }

    /// `[kommun]`, `[admin]` and `[events]`: addresses, TLS, the events' sender and bounds.
    pub(super) fn listeners(&mut self, f: &ConfigFile) -> Listeners {
        let kommun_bind = self.addr("kommun.bind", &f.kommun.bind);
        let kommun = self.tls(
            "kommun",
            ("kommun.cert", &f.kommun.cert),
            ("kommun.key", &f.kommun.key),
            ("kommun.client_ca", &f.kommun.client_ca),
            ("kommun.client_crls", &f.kommun.client_crls),
        );
        let admin_bind = self.addr("admin.bind", &f.admin.bind);
        let events_bind = self.addr("events.bind", &f.events.bind);
        let events_tls = self.tls(
            "af-listener",
            ("events.cert", &f.events.cert),
            ("events.key", &f.events.key),
            ("events.client_ca", &f.events.client_ca),
            ("events.client_crls", &f.events.client_crls),
        );
        for (key, t) in [("kommun.cert", &kommun), ("events.cert", &events_tls)] {
            if let Some((m, _)) = t
                && let Err(e) = tls::mtls_server_config(
                    m.identity.chain.clone(),
                    m.identity.key.clone_key(),
                    &m.roots,
                    &m.crls.iter().map(|c| c.der.clone()).collect::<Vec<_>>(),
                )
            {
                self.fail(key, e);
            }
        }
        let events_sender = Organisationsnummer::parse(&f.events.sender_orgnr)
            .map_err(|e| self.fail("events.sender_orgnr", e))
            .ok();
        if !(1024..=64 * 1024 * 1024).contains(&f.events.max_body_bytes) {
            self.fail("events.max_body_bytes", "must be from 1024 to 67108864");
        }
        if !(1..=1024).contains(&f.events.max_batches_in_flight) {
            self.fail("events.max_batches_in_flight", "must be from 1 to 1024");
        }
        let events = match (events_bind, events_tls, events_sender) {
            (Some(bind), Some((tls, files)), Some(sender)) => Some(EventsSettings {
                bind,
                tls,
                files,
                sender,
                max_body_bytes: f.events.max_body_bytes,
                max_batches_in_flight: f.events.max_batches_in_flight,
            }),
            _ => None,
        };
        (kommun_bind, kommun, admin_bind, events)
    }

    /// `[delivery]`: brygga's client identity towards the case systems, and its timings.
    pub(super) fn delivery(&mut self, d: &DeliveryFile) -> Option<DeliverySettings> {
        let delivery_chain = self.certs("delivery.client_cert", &d.client_cert);
        let delivery_key = self.key("delivery.client_key", &d.client_key);
        for (k, v) in [
            ("delivery.timeout", d.timeout),
            ("delivery.first_retry", d.first_retry),
            ("delivery.max_retry", d.max_retry),
            ("delivery.max_age", d.max_age),
        ] {
            self.positive(k, v);
        }
        if d.first_retry > d.max_retry {
            self.fail(
                "delivery.first_retry",
                "must not be longer than delivery.max_retry",
            );
        }
        for (k, v, most, said) in [
            ("delivery.timeout", d.timeout, 300, "5m"),
            ("delivery.max_retry", d.max_retry, 24 * 3600, "24h"),
            ("delivery.max_age", d.max_age, 30 * 24 * 3600, "30 days"),
            ("delivery.drain", d.drain, 300, "5m"),
        ] {
            if v > Duration::from_secs(most) {
                self.fail(k, format!("must be at most {said}"));
            }
        }
        match (delivery_chain, delivery_key) {
            (Some(chain), Some(key)) => Some(DeliverySettings {
                identity: CertAndKey { chain, key },
                identity_files: IdentityFiles {
                    cert: self.path(&d.client_cert),
                    key: self.path(&d.client_key),
                },
                timeout: d.timeout,
                first_retry: d.first_retry,
                max_retry: d.max_retry,
                max_age: d.max_age,
                drain: d.drain,
            }),
            _ => None,
        }
    }

    /// `[limits]`, `[af]`, `[revocation]`, `[health]`, `[log]` and `[jwt]`: bounds and
    /// deadlines, and what the AF client needs.
    pub(super) fn limits_and_af(&mut self, f: &ConfigFile) -> AfParts {
        let l = &f.limits;
        if !(1024..=16 * 1024 * 1024).contains(&l.max_body_bytes) {
            self.fail("limits.max_body_bytes", "must be from 1024 to 16777216");
        }
        self.positive("limits.tls_handshake_timeout", l.tls_handshake_timeout);
        self.positive("limits.header_read_timeout", l.header_read_timeout);
        if l.keep_alive_timeout + Duration::from_secs(1) > l.header_read_timeout {
            self.fail(
                "limits.keep_alive_timeout",
                "must be at least 1s shorter than limits.header_read_timeout, at which an idle connection is closed",
            );
        }
        self.positive("limits.body_read_timeout", l.body_read_timeout);
        // Deadlines are added to the clock: an absurd one would overflow it.
        for (key, d) in [
            ("limits.tls_handshake_timeout", l.tls_handshake_timeout),
            ("limits.header_read_timeout", l.header_read_timeout),
            ("limits.body_read_timeout", l.body_read_timeout),
            ("af.timeout", f.af.timeout),
            ("af.connect_timeout", f.af.connect_timeout),
            ("gateway.reload_poll", f.gateway.reload_poll),
        ] {
            if d > Duration::from_secs(3600) {
                self.fail(key, "must be at most 1h");
            }
        }
        self.positive("gateway.reload_poll", f.gateway.reload_poll);

        self.https("af.base_url", &f.af.base_url);
        self.https("af.token_url", &f.af.token_url);
        let af_tls = self.tls(
            "af",
            ("af.client_cert", &f.af.client_cert),
            ("af.client_key", &f.af.client_key),
            ("af.ca", &f.af.ca),
            ("af.crls", &f.af.crls),
        );
        let r = &f.revocation;
        for (key, d, most) in [
            ("revocation.refresh", r.refresh, 7 * 24 * 3600),
            ("revocation.retry", r.retry, 24 * 3600),
            ("revocation.timeout", r.timeout, 300),
            (
                "revocation.forget_unused_after",
                r.forget_unused_after,
                30 * 24 * 3600,
            ),
        ] {
            self.positive(key, d);
            if d > Duration::from_secs(most) {
                self.fail(
                    key,
                    format!(
                        "must be at most {}",
                        humantime::format_duration(Duration::from_secs(most))
                    ),
                );
            }
        }
        if !(1024..=1024 * 1024 * 1024).contains(&r.max_bytes) {
            self.fail("revocation.max_bytes", "must be from 1024 to 1073741824");
        }
        self.positive("limits.max_connection_age", f.limits.max_connection_age);
        if f.af.client_id.trim().is_empty() {
            self.fail("af.client_id", "must not be empty");
        }
        let client_secret = match &f.af.client_secret_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Some(Secret(v)),
                _ => {
                    self.fail(
                        "af.client_secret_env",
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            None => None,
        };
        self.positive("af.timeout", f.af.timeout);
        self.positive("af.connect_timeout", f.af.connect_timeout);
        self.positive("limits.operation_deadline", f.limits.operation_deadline);
        if f.limits.operation_deadline > Duration::from_secs(300) {
            self.fail("limits.operation_deadline", "must be at most 5m");
        }
        if !(1..=1_000_000).contains(&f.limits.max_connections) {
            self.fail("limits.max_connections", "must be from 1 to 1000000");
        }
        let pending = 64 * 1024..=1024 * 1024 * 1024;
        if !pending.contains(&f.limits.max_pending_bytes_per_connection) {
            self.fail(
                "limits.max_pending_bytes_per_connection",
                "must be from 65536 to 1073741824",
            );
        }
        if !pending.contains(&f.limits.max_pending_bytes_per_certificate)
            || f.limits.max_pending_bytes_per_certificate
                < f.limits.max_pending_bytes_per_connection
        {
            self.fail(
                "limits.max_pending_bytes_per_certificate",
                "must be from limits.max_pending_bytes_per_connection to 1073741824",
            );
        }
        if !(1..=100_000).contains(&f.limits.max_handshakes) {
            self.fail("limits.max_handshakes", "must be from 1 to 100000");
        }
        if !(1..=f.limits.max_handshakes.max(1)).contains(&f.limits.max_handshakes_per_address) {
            self.fail(
                "limits.max_handshakes_per_address",
                "must be from 1 to limits.max_handshakes",
            );
        }
        self.rate(
            "limits.new_connections_per_address".into(),
            f.limits.new_connections_per_address,
        );
        if !(1..=f.limits.max_connections.max(1))
            .contains(&f.limits.max_connections_per_certificate)
        {
            self.fail(
                "limits.max_connections_per_certificate",
                "must be from 1 to limits.max_connections",
            );
        }
        self.positive("af.breaker_open", f.af.breaker_open);
        let retry_budget = self.rate("af.retry_budget".into(), f.af.retry_budget);
        if f.health.warn_certificate_days < f.health.min_certificate_days {
            self.fail(
                "health.warn_certificate_days",
                "must be at least health.min_certificate_days",
            );
        }
        if f.health.cache > Duration::from_secs(60) {
            self.fail("health.cache", "must be at most 60s");
        }
        self.positive("health.jwks_max_age", f.health.jwks_max_age);
        if f.health.jwks_max_age <= f.jwt.jwks_refresh {
            self.fail(
                "health.jwks_max_age",
                "must be longer than jwt.jwks_refresh, or every refresh cycle makes the gateway not ready",
            );
        }
        if let Some(level) = &f.log.level
            && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
        {
            self.fail("log.level", format!("not a log filter: {e}"));
        }
        if !(1..=10_000).contains(&f.af.max_connections) {
            self.fail("af.max_connections", "must be from 1 to 10000");
        }
        if !(1..=1000).contains(&f.af.breaker_failures) {
            self.fail("af.breaker_failures", "must be from 1 to 1000");
        }

        if f.jwt.audience.trim().is_empty() {
            self.fail("jwt.audience", "must not be empty");
        }
        if f.jwt.leeway > Duration::from_secs(300) {
            self.fail("jwt.leeway", "must be at most 5m");
        }
        if f.jwt.max_lifetime.is_zero() || f.jwt.max_lifetime > Duration::from_secs(24 * 3600) {
            self.fail(
                "jwt.max_lifetime",
                "must be longer than zero and at most 24h",
            );
        }
        if f.jwt.jwks_refresh < Duration::from_secs(10)
            || f.jwt.jwks_refresh > Duration::from_secs(24 * 3600)
        {
            self.fail("jwt.jwks_refresh", "must be from 10s to 24h");
        }

        (af_tls, client_secret, retry_budget)
    }

    /// `[telemetry]`: the optional OTLP collector.
    pub(super) fn telemetry(&mut self, t: &TelemetryFile) -> Option<TelemetrySettings> {
        match &t.otlp_endpoint {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(url);
                let ca = match &t.ca {
                    Some(p) => self.certs("telemetry.ca", p),
                    None => Some(Vec::new()),
                };
                match parsed {
                    Ok(u) if u.host().is_none() || !matches!(u.scheme(), "http" | "https") => {
                        self.fail(
                            "telemetry.otlp_endpoint",
                            "must be an http:// or https:// URL with a host",
                        );
                        None
                    }
                    Ok(u) if u.scheme() == "https" && t.ca.is_none() => {
                        self.fail(
                            "telemetry.ca",
                            "an https:// collector needs the CA bundle it chains to",
                        );
                        None
                    }
                    Ok(_) => {
                        if t.service_name.trim().is_empty() || t.service_name.len() > 64 {
                            self.fail("telemetry.service_name", "must be 1 to 64 characters");
                        }
                        self.positive("telemetry.timeout", t.timeout);
                        ca.map(|ca| TelemetrySettings {
                            endpoint: url.clone(),
                            service_name: t.service_name.clone(),
                            ca,
                            timeout: t.timeout,
                        })
                    }
                    Err(e) => {
                        self.fail("telemetry.otlp_endpoint", format!("not a URL: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// `[[syften]]`: the purposes, by code.
    pub(super) fn syften(&mut self, list: &[SyfteFile]) -> BTreeMap<String, Syfte> {
        let mut syften = BTreeMap::new();
        for (i, s) in list.iter().enumerate() {
            let key = format!("syften[{i}]");
            if !crate::model::lexical::is_code(&s.kod) {
                self.fail(format!("{key}.kod"), "must match [A-Z][A-Z0-9-]{1,31}");
            }
            if s.lagrum.trim().is_empty() || s.lagrum.chars().count() > 500 {
                self.fail(format!("{key}.lagrum"), "must be 1-500 characters");
            }
            if s.beskrivning.trim().is_empty() {
                self.fail(format!("{key}.beskrivning"), "must not be empty");
            }
            let mut kategorier = HashSet::new();
            for (j, k) in s.kategorier.iter().enumerate() {
                match Datakategori::from_code(k) {
                    Some(d) => {
                        kategorier.insert(d);
                    }
                    None => self.fail(
                        format!("{key}.kategorier[{j}]"),
                        format!("'{k}' is not a data category ({})", Datakategori::codes()),
                    ),
                }
            }
            for (j, l) in s.lagrum_godtas.iter().enumerate() {
                if l.trim().is_empty() || l.chars().count() > 500 {
                    self.fail(
                        format!("{key}.lagrum_godtas[{j}]"),
                        "must be 1-500 characters",
                    );
                }
            }
            let syfte = Syfte {
                kod: s.kod.clone(),
                beskrivning: s.beskrivning.clone(),
                lagrum: s.lagrum.clone(),
                accepted: std::iter::once(&s.lagrum)
                    .chain(&s.lagrum_godtas)
                    .map(|l| normalise_lagrum(l))
                    .collect(),
                kategorier,
            };
            if syften.insert(s.kod.clone(), syfte).is_some() {
                self.fail(format!("{key}.kod"), format!("{} is listed twice", s.kod));
            }
        }

        syften
    }

    /// `[audit]`: the store, the signing keys, the checkpoint policy.
    pub(super) fn audit(&mut self, a: &AuditFile) -> AuditSettings {
        let signing_key = match std::fs::read(self.path(&a.signing_key)) {
            Ok(pem) => match jsonwebtoken::EncodingKey::from_ed_pem(&pem) {
                Ok(_) => Some(pem),
                Err(e) => {
                    self.fail(
                        "audit.signing_key",
                        format!("not an Ed25519 private key in PKCS#8 PEM: {e}"),
                    );
                    None
                }
            },
            Err(e) => {
                self.fail(
                    "audit.signing_key",
                    format!("{}: {e}", a.signing_key.display()),
                );
                None
            }
        };
        let mut previous_public_keys = Vec::new();
        for (i, p) in a.previous_public_keys.iter().enumerate() {
            match std::fs::read(self.path(p)) {
                Ok(pem) if jsonwebtoken::DecodingKey::from_ed_pem(&pem).is_ok() => {
                    previous_public_keys.push(pem)
                }
                Ok(_) => self.fail(
                    format!("audit.previous_public_keys[{i}]"),
                    "not an Ed25519 public key in PEM",
                ),
                Err(e) => self.fail(
                    format!("audit.previous_public_keys[{i}]"),
                    format!("{}: {e}", p.display()),
                ),
            }
        }
        let store = self.path(&a.store);
        // A missing directory is made at start; something else in its place is a mistake.
        if store.is_dir() {
            self.fail(
                "audit.store",
                format!(
                    "{} is a directory; name the SQLite file in it",
                    store.display()
                ),
            );
        } else if let Some(dir) = store.ancestors().skip(1).find(|a| a.exists())
            && !dir.is_dir()
        {
            self.fail(
                "audit.store",
                format!("{} is not a directory", dir.display()),
            );
        }
        // A typo here erases the evidence: "2s" for "2y".
        if let Some(r) = a.retention
            && r < Duration::from_secs(86_400)
        {
            self.fail(
                "audit.retention",
                format!(
                    "{} is shorter than a day; give the period records are kept (e.g. \"2years\")",
                    humantime::format_duration(r)
                ),
            );
        }
        // A witness beside the store's own files is no witness: whoever replaces the one
        // replaces the other.
        if let Some(w) = &a.witness {
            let w = self.path(w);
            let store_files =
                ["", "-wal", "-shm", "-journal"].map(|s| format!("{}{s}", store.display()));
            if store_files.iter().any(|s| Path::new(s) == w) {
                self.fail(
                    "audit.witness",
                    format!(
                        "{} is the store itself; name a file on another path",
                        w.display()
                    ),
                );
            } else if w.is_dir() {
                self.fail(
                    "audit.witness",
                    format!("{} is a directory; name the file to append to", w.display()),
                );
            }
        }
        if a.checkpoint_every_records == 0 {
            self.fail("audit.checkpoint_every_records", "must be at least 1");
        }
        self.positive("audit.checkpoint_every", a.checkpoint_every);
        AuditSettings {
            store,
            signing_key: signing_key.unwrap_or_default(),
            signing_key_file: self.path(&a.signing_key),
            previous_public_keys,
            policy: CheckpointPolicy {
                every_records: a.checkpoint_every_records,
                every: a.checkpoint_every,
                witness: a.witness.as_ref().map(|w| self.path(w)),
                retention: a.retention,
            },
        }
    }
}
