//! Request bodies read with a bound on their size and on the time they take: a declared
//! length over the bound is refused before a byte is read, and a slow sender is cut off.

use http::header;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;

use crate::error::{Failure, Felkod};

/// Reads a request body of at most `max` bytes that arrives within `limit`.
pub async fn read_bounded(
    req: Request<Incoming>,
    max: usize,
    limit: std::time::Duration,
) -> Result<bytes::Bytes, Failure> {
    let too_large = || {
        Failure::new(
            Felkod::ForStorBegaran,
            format!("the request body is larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(limit, Limited::new(req.into_body(), max).collect()).await {
        Err(_) => Err(Failure::new(
            Felkod::LangsamKlient,
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(Failure::new(
            Felkod::OfullstandigBegaran,
            "the request body could not be read to its end (the connection or stream broke off)",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
