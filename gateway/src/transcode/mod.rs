//! REST <-> gRPC transcoding with dynamic messages: building the request
//! message from path, query and body, calling the upstream with a codec that
//! needs no generated types, and rendering the reply as JSON or XML.

pub mod codec;
pub mod request;
pub mod response;
mod xml;

pub use xml::element as xml_element;
