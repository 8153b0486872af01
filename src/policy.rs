//! Authorisation, deny by default: this client may run this operation for this purpose, for
//! its own municipality only, as the case worker named in the token.

use crate::config::Client;
use crate::identity::CaseWorker;
use crate::model::{KommunRequest, Operation};

/// Why a request was refused. Each is its own Felkod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("the token's kommunkod is not the municipality of the client certificate")]
    ForeignKommun,
    #[error("Handlaggare must be the case worker named in the token (sub)")]
    Handlaggare,
    #[error("Organisationsnummer must be the organisation of the client certificate")]
    Ingivare,
    #[error("Syfte must be the purpose named in the token")]
    SyfteMismatch,
    #[error("this client may not call {}", .0.name())]
    Operation(Operation),
    #[error("this client may not use the purpose {0}")]
    Syfte(String),
}

/// Checks a decoded request against the client's policy and the verified token.
pub fn authorise(client: &Client, worker: &CaseWorker, req: &KommunRequest) -> Result<(), Denial> {
    if worker.kommunkod != client.kommunkod {
        return Err(Denial::ForeignKommun);
    }
    if !client.operations.contains(&req.operation()) {
        return Err(Denial::Operation(req.operation()));
    }
    // Ping carries no personal data, so there is no case worker or purpose to match.
    let Some(fraga) = req.fraga() else {
        return Ok(());
    };
    if fraga.ingivare.organisationsnummer != client.orgnr {
        return Err(Denial::Ingivare);
    }
    if fraga.ingivare.handlaggare != worker.hsa_id {
        return Err(Denial::Handlaggare);
    }
    if fraga.syfte != worker.syfte {
        return Err(Denial::SyfteMismatch);
    }
    if !client.syften.contains(&fraga.syfte) {
        return Err(Denial::Syfte(fraga.syfte.clone()));
    }
    Ok(())
}
