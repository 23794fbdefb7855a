//! Generated gRPC types for every service, plus the encoded descriptor set.
//!
//! The descriptor set is what the gateway reads its REST routes from (the
//! `google.api.http` annotations) and what each service serves through gRPC
//! reflection, so there is exactly one description of the API.

pub mod events;

/// Encoded `google.protobuf.FileDescriptorSet` of all protos, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub mod chatbot {
    pub mod v1 {
        tonic::include_proto!("chatbot.v1");
    }
}

pub mod integration {
    pub mod v1 {
        tonic::include_proto!("integration.v1");
    }
}

pub mod analytics {
    pub mod v1 {
        tonic::include_proto!("analytics.v1");
    }
}

pub mod webhooks {
    pub mod v1 {
        tonic::include_proto!("webhooks.v1");
    }
}
