//! The query of the list routes the gateway serves itself (API keys, OAuth
//! clients): `limit` and `cursor`, as every transcoded list takes them.

use service_runtime::pagination::NewestFirst;

use crate::problem::Problem;

/// The page a list request asks for; any other query parameter is an
/// error (`format` picks the answer's format and is allowed).
pub fn page(query: Option<&str>) -> Result<NewestFirst, Problem> {
    let mut limit = 0;
    let mut cursor = String::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => {
                limit = value
                    .parse()
                    .map_err(|_| Problem::invalid_argument("limit", "must be a number"))?
            }
            "cursor" => cursor = value.into_owned(),
            "format" => {}
            other => return Err(Problem::unknown_parameter(other)),
        }
    }
    NewestFirst::new(limit, &cursor).map_err(|status| Problem::from_status(&status))
}
