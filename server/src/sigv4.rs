//! AWS Signature Version 4 verification for the Kinesis API: when credentials are
//! configured, a request must carry a valid `Authorization: AWS4-HMAC-SHA256 ...` header
//! signed with one of them, or it is refused with the error real Kinesis gives.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Access key id → secret access key.
#[derive(Debug, Clone, Default)]
pub struct Credentials(HashMap<String, String>);

impl std::str::FromStr for Credentials {
    type Err = String;

    /// `AKID:SECRET[,AKID:SECRET...]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut map = HashMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (id, secret) =
                pair.split_once(':').ok_or("credentials are AKID:SECRET pairs, comma separated")?;
            map.insert(id.to_string(), secret.to_string());
        }
        Ok(Credentials(map))
    }
}

/// Why a request was refused: the Kinesis exception name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Exception name.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Checks the request's signature. `headers` are (lower-case name, value) pairs; `host` is
/// the `Host` header or, for HTTP/2, the `:authority`.
pub fn verify(
    credentials: &Credentials,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), Refusal> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let Some(authorization) = header("authorization") else {
        return Err(refuse("MissingAuthenticationTokenException", "Missing Authentication Token"));
    };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(refuse(
            "IncompleteSignatureException",
            "Only AWS4-HMAC-SHA256 signatures are supported.",
        ));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in fields.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(refuse(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
        ));
    };
    let Some(date) = header("x-amz-date") else {
        return Err(refuse(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let mut scope = credential.splitn(2, '/');
    let (Some(access_key), Some(scope)) = (scope.next(), scope.next()) else {
        return Err(refuse(
            "IncompleteSignatureException",
            "Credential should be scoped to a valid region.",
        ));
    };
    let Some(secret) = credentials.0.get(access_key) else {
        return Err(refuse(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    // Canonical request.
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut query_pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    query_pairs.sort_unstable();
    let payload_hash =
        header("x-amz-content-sha256").map_or_else(|| hex(&Sha256::digest(body)), str::to_string);
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        if path.is_empty() { "/" } else { path },
        query_pairs.join("&")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    let same = expected.len() == signature.len()
        && expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !same {
        return Err(refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 example (IAM ListUsers, GET) from the signing documentation.
    #[test]
    fn the_documented_example_verifies() {
        let creds: Credentials =
            "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".parse().expect("parse");
        let headers = vec![
            ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
            ("host".to_string(), "iam.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
            (
                "authorization".to_string(),
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7".to_string(),
            ),
        ];
        assert_eq!(
            verify(&creds, "GET", "/", "Action=ListUsers&Version=2010-05-08", &headers, b""),
            Ok(())
        );
        let mut wrong = headers.clone();
        wrong[2].1 = "20150830T123601Z".into();
        assert_eq!(
            verify(&creds, "GET", "/", "Action=ListUsers&Version=2010-05-08", &wrong, b"")
                .map_err(|r| r.code),
            Err("InvalidSignatureException")
        );
        let other: Credentials = "OTHER:x".parse().expect("parse");
        assert_eq!(
            verify(&other, "GET", "/", "", &headers, b"").map_err(|r| r.code),
            Err("UnrecognizedClientException")
        );
        assert_eq!(
            verify(&creds, "GET", "/", "", &headers[..3], b"").map_err(|r| r.code),
            Err("MissingAuthenticationTokenException")
        );
    }
}
