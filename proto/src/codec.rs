//! The gRPC codec of the Ingest service: prost, with the repeated fields of an incoming
//! `AgentMessage` counted on the wire before it is decoded.

use std::marker::PhantomData;

use prost::bytes::Buf;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::limits::COUNTED_ON_THE_WIRE;
use crate::v1::{AgentMessage, CollectorMessage, EnrolRequest, EnrolResponse};
use crate::wire::most_elements;

/// What a decoder checks in an encoded message before decoding it.
pub trait WireCheck {
    /// `Err` (the status the peer is refused with) when the message must not be decoded.
    fn check_encoded(message: &[u8]) -> Result<(), Status>;
}

impl WireCheck for AgentMessage {
    /// Refuses a message with more elements in a counted repeated field than its limit allows
    /// (`RESOURCE_EXHAUSTED`, worded like the collector's other limits), or one that does not
    /// parse (`INTERNAL`, as prost would).
    fn check_encoded(message: &[u8]) -> Result<(), Status> {
        for repeated in &COUNTED_ON_THE_WIRE {
            let found = most_elements(message, repeated)
                .map_err(|e| Status::internal(format!("failed to decode AgentMessage: {e}")))?;
            if found > repeated.limit.max {
                return Err(Status::resource_exhausted(format!(
                    "{} has {found} {}; the limit is {}",
                    repeated.field, repeated.limit.unit, repeated.limit.max
                )));
            }
        }
        Ok(())
    }
}

impl WireCheck for CollectorMessage {
    /// The collector's acknowledgements are a few integers: nothing to count.
    fn check_encoded(_: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

impl WireCheck for EnrolRequest {
    /// A CSR and a token: bounded by the service's message size and checked field by field by
    /// the collector's enrolment service, with nothing repeated to count.
    fn check_encoded(_: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

impl WireCheck for EnrolResponse {
    /// A certificate and a few scalars, from the collector.
    fn check_encoded(_: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

/// [`ProstCodec`] whose decoder runs [`WireCheck`] first.
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        CheckedCodec {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + WireCheck + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            inner: self.inner.decoder(),
            _message: PhantomData,
        }
    }
}

/// The decoder of [`CheckedCodec`].
#[derive(Debug)]
pub struct CheckedDecoder<U> {
    inner: ProstDecoder<U>,
    _message: PhantomData<U>,
}

impl<U: Message + Default + WireCheck> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if buf.chunk().len() == buf.remaining() {
            U::check_encoded(buf.chunk())?;
        } else {
            // Not contiguous (tonic keeps one message in one buffer, so not expected): copy.
            let whole = buf.copy_to_bytes(buf.remaining());
            U::check_encoded(&whole)?;
            return U::decode(whole)
                .map(Some)
                .map_err(|e| Status::internal(e.to_string()));
        }
        self.inner.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}
