//! `[[clients]]`: each case system that may ask, its identity provider and its delivery
//! endpoint.

use super::*;

impl Checker {
    /// Every client, and the delivery endpoints by client name.
    pub(super) fn clients(
        &mut self,
        f: &ConfigFile,
        syften: &BTreeMap<String, Syfte>,
    ) -> (Vec<Arc<Client>>, BTreeMap<String, ClientDelivery>) {
        if f.clients.is_empty() {
            self.fail("clients", "at least one client is needed");
        }
        let mut clients = Vec::new();
        let mut seen = HashSet::new();
        let mut endpoints = BTreeMap::new();
        for (i, cf) in f.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            if !valid_id(&cf.name) {
                self.fail(
                    format!("{key}.name"),
                    "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'",
                );
            }
            // The name keys the verified-token cache: two clients must never share one.
            if f.clients[..i].iter().any(|other| other.name == cf.name) {
                self.fail(
                    format!("{key}.name"),
                    format!("'{}' is used by another client", cf.name),
                );
            }
            let orgnr = Organisationsnummer::parse(&cf.orgnr)
                .map_err(|e| self.fail(format!("{key}.orgnr"), e))
                .ok();
            if let Some(o) = orgnr
                && !seen.insert(o)
            {
                self.fail(format!("{key}.orgnr"), format!("{o} is configured twice"));
            }
            let kommunkod = Kommunkod::parse(&cf.kommunkod)
                .map_err(|e| self.fail(format!("{key}.kommunkod"), e))
                .ok();
            let mut operations = HashSet::new();
            for (j, name) in cf.operations.iter().enumerate() {
                match Operation::from_name(name) {
                    Some(op) => {
                        operations.insert(op);
                    }
                    None => self.fail(
                        format!("{key}.operations[{j}]"),
                        format!(
                            "unknown operation '{name}' (known: {})",
                            Operation::ALL.map(|o| o.name()).join(", ")
                        ),
                    ),
                }
            }
            for (j, s) in cf.syften.iter().enumerate() {
                if !syften.contains_key(s) {
                    self.fail(
                        format!("{key}.syften[{j}]"),
                        format!("'{s}' is not a purpose listed under [[syften]]"),
                    );
                }
            }
            let mut syften_per_operation = HashMap::new();
            for (name, allowed) in &cf.syften_per_operation {
                let op_key = format!("{key}.syften_per_operation.{name}");
                let Some(op) = Operation::from_name(name) else {
                    self.fail(&op_key, format!("unknown operation '{name}'"));
                    continue;
                };
                for s in allowed {
                    if !cf.syften.contains(s) {
                        self.fail(&op_key, format!("'{s}' is not among this client's syften"));
                    }
                }
                syften_per_operation.insert(op, allowed.iter().cloned().collect::<HashSet<_>>());
            }
            let client_rate = self.rate(format!("{key}.rate"), cf.rate);
            let mut rate_per_operation = HashMap::new();
            for (name, r) in &cf.rate_per_operation {
                let op_key = format!("{key}.rate_per_operation.{name}");
                match Operation::from_name(name) {
                    Some(op) => {
                        if let Some(q) = self.rate(op_key, *r) {
                            rate_per_operation.insert(op, q);
                        }
                    }
                    None => self.fail(op_key, format!("unknown operation '{name}'")),
                }
            }
            if !(1..=100_000).contains(&cf.max_concurrent) {
                self.fail(format!("{key}.max_concurrent"), "must be from 1 to 100000");
            }
            for (j, p) in cf.handlaggare_prefix.iter().enumerate() {
                if !p.starts_with("SE") || p.len() < 3 || p.len() > 31 {
                    self.fail(
                        format!("{key}.handlaggare_prefix[{j}]"),
                        "must be the start of an HSA-id, such as SE2120000142-",
                    );
                }
            }
            if let Some(d) = &cf.delivery {
                if !d.url.starts_with("https://") || d.url.parse::<http::Uri>().is_err() {
                    self.fail(format!("{key}.delivery.url"), "must be an https URL");
                }
                let ca = self.certs(&format!("{key}.delivery.ca"), &d.ca);
                let (sources, crls) =
                    self.crl_sources(&format!("{key}.delivery.crls"), &d.crls, ca.as_deref());
                if let Some(ca) = ca {
                    endpoints.insert(
                        cf.name.clone(),
                        ClientDelivery {
                            url: d.url.clone(),
                            ca,
                            crls,
                            trust: crate::access::trust::EdgeFiles {
                                name: format!("delivery.{}", cf.name),
                                ca: self.path(&d.ca),
                                crls: sources,
                            },
                        },
                    );
                }
            }
            let idp = match (&cf.idp.jwks_file, &cf.idp.jwks_url) {
                (Some(file), None) => {
                    IdpKeys::load(&cf.idp.issuer, &cf.idp.algorithm, &self.path(file))
                        .map_err(|(field, e)| self.fail(format!("{key}.idp.{field}"), e))
                        .ok()
                }
                (None, Some(url)) => {
                    self.https(&format!("{key}.idp.jwks_url"), url);
                    if cf.idp.jwks_min_refresh < Duration::from_secs(1)
                        || cf.idp.jwks_min_refresh > Duration::from_secs(3600)
                    {
                        self.fail(
                            format!("{key}.idp.jwks_min_refresh"),
                            "must be from 1s to 1h",
                        );
                    }
                    if cf.idp.jwks_grace > f.jwt.max_lifetime + f.jwt.leeway {
                        self.fail(
                            format!("{key}.idp.jwks_grace"),
                            "must be at most jwt.max_lifetime + jwt.leeway: no token outlives that",
                        );
                    }
                    let cas = match &cf.idp.jwks_ca {
                        Some(ca) => self.certs(&format!("{key}.idp.jwks_ca"), ca),
                        None => {
                            self.fail(format!("{key}.idp.jwks_ca"), "required with jwks_url");
                            None
                        }
                    };
                    let http = cas.and_then(|cas| {
                        tls::client_config(&cas, None)
                            .map_err(|e| e.to_string())
                            .and_then(|cfg| {
                                // No redirects: one from the trusted server could lead anywhere.
                                reqwest::Client::builder()
                                    .tls_backend_preconfigured(cfg)
                                    .no_proxy()
                                    .pool_idle_timeout(OUTBOUND_IDLE_TIMEOUT)
                                    .https_only(true)
                                    .redirect(reqwest::redirect::Policy::none())
                                    .build()
                                    .map_err(|e| e.to_string())
                            })
                            .map_err(|e| self.fail(format!("{key}.idp.jwks_ca"), e))
                            .ok()
                    });
                    http.and_then(|http| {
                        let source = crate::access::identity::JwksUrl {
                            url: url.clone(),
                            http,
                            min_refresh: cf.idp.jwks_min_refresh,
                            grace: cf.idp.jwks_grace,
                        };
                        IdpKeys::from_url(&cf.idp.issuer, &cf.idp.algorithm, source)
                            .map_err(|(field, e)| self.fail(format!("{key}.idp.{field}"), e))
                            .ok()
                    })
                }
                _ => {
                    self.fail(
                        format!("{key}.idp"),
                        "give exactly one of jwks_file and jwks_url",
                    );
                    None
                }
            };
            if let (Some(orgnr), Some(kommunkod), Some(idp), Some(client_rate)) =
                (orgnr, kommunkod, idp, client_rate)
            {
                clients.push(Arc::new(Client {
                    name: cf.name.clone(),
                    orgnr,
                    kommunkod,
                    operations,
                    syften: cf.syften.iter().cloned().collect(),
                    syften_per_operation,
                    handlaggare_prefix: cf.handlaggare_prefix.clone(),
                    bind_tokens_to_certificate: cf.bind_tokens_to_certificate,
                    idp,
                    rate: client_rate,
                    rate_per_operation,
                    max_concurrent: cf.max_concurrent,
                }));
            }
        }

        (clients, endpoints)
    }
}
