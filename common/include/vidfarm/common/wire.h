// The vidfarm wire protocol, defined once (ARCHITECTURE.md, "Wire protocol"). Transport-neutral:
// a message is a list of frames; ZeroMQ sockets (coordinator ROUTER, worker/client DEALER) carry
// them as one multipart message. ROUTER identity frames are the transport's business, not ours.
//
//   frame 0: protocol version, "VF1"
//   frame 1: command name, e.g. "READY"
//   frame 2: header, a JSON object (at most DecodeLimits::max_header_bytes)
//   frame 3…: binary payload frames (count and size bounded by DecodeLimits)
//
// Large data never travels in one message: it moves in chunks with credit-based flow control.
//   download (coordinator → worker or client): the receiver sends FETCH {blob, offset, length}
//     requests, keeping at most `credit` outstanding; each is answered by CHUNK {blob, offset,
//     total} + one data frame (like the ZeroMQ guide's credit-based file transfer).
//   upload (worker → coordinator): the sender sends PUT {upload, offset, total} + one data frame,
//     keeping at most `credit` un-acknowledged; the coordinator answers each with PUT_ACK.
//     Videos that together fit in one chunk may instead ride in the CHECKPOINT or RESULT itself:
//     {…, inline: true} + one data frame per task, no "uploads".
//
// Credit: a worker asks for work with READY (its registration: stage, model, shape, max_batch,
//   max_leases). Where an ASSIGN says "ready_in_result": true, the worker's RESULT for that lease
//   may say "ready": true instead of a READY after it: the coordinator then offers the credit
//   again as for a READY from the registered worker.
//
// Worker → coordinator: READY, HEARTBEAT, PROGRESS, CHECKPOINT, RESULT, FAIL, FETCH, PUT.
// Coordinator → worker: ASSIGN, CANCEL, HEARTBEAT, DISCONNECT, CHUNK, PUT_ACK, ERROR.
// Client → coordinator: SUBMIT, STATUS, LIST, WATCH, CANCEL_JOB, PAUSE, RESUME, RETRY, WORKERS,
//   FETCH. Coordinator → client: REPLY, ERROR, EVENT, CHUNK.
// Every request from a client carries "rid" (request id) in its header, echoed in the answer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vidfarm/common/status.h"
#include "vidfarm/common/video.h"

namespace vidfarm::wire {

inline constexpr std::string_view kVersion = "VF1";

enum class Command {
  // worker → coordinator
  kReady,       // {worker_id, host, pid, stage, preset, model_sha256, max_batch, shape:{frames,
                //   height, width, fps}, max_leases?: 1 + prefetch (default 1), leases?: [held
                //   lease ids, oldest first], lease?: the oldest (the older single form)}
  kHeartbeat,   // {} (both directions)
  kProgress,    // {lease, step, steps}
  kCheckpoint,  // {lease, step, uploads:[upload per task]}: sampler latents already PUT
                //   or {lease, step, inline:true} + one frame per task
  kResult,      // {lease, uploads:[upload per task]}: output videos already PUT
                //   or {lease, inline:true} + one frame per task
  kFail,        // {lease, error, retryable}
  kFetch,       // {blob, offset, length} (also from clients)
  kPut,         // {upload, offset, total} + 1 data frame
  // coordinator → worker
  kAssign,      // {lease, stage, tasks:[TaskAssignment…]}
  kCancel,      // {lease, reason}
  kDisconnect,  // {reason}
  kChunk,       // {blob, offset, total} + 1 data frame
  kPutAck,      // {upload, offset}
  kError,       // {error, code, rid?}
  // client → coordinator
  kSubmit,      // {rid, jobs:[JobSpec…]}
  kStatus,      // {rid, job?}
  kList,        // {rid, state?}
  kWatch,       // {rid, job}
  kCancelJob,   // {rid, job}
  kPause,       // {rid, job}
  kResume,      // {rid, job}
  kRetry,       // {rid, job}
  kWorkers,     // {rid}
  // coordinator → client
  kReply,       // {rid, …}
  kEvent,       // {rid, job, type, data}
};

const char* CommandName(Command c);
Result<Command> ParseCommand(std::string_view name);

struct Message {
  Command command = Command::kHeartbeat;
  nlohmann::json header = nlohmann::json::object();
  std::vector<std::string> payload;
};

struct DecodeLimits {
  size_t max_header_bytes = 1 << 20;      // Default: 1 MiB.
  size_t max_payload_frames = 16;         // Default: 16.
  size_t max_payload_bytes = 64ull << 20;  // Default: 64 MiB per frame (chunks are far smaller).
};

std::vector<std::string> Encode(const Message& m);
// Validates everything: frame count, version (NotSupported for another "VF…" version), command,
// header (a JSON object within the limit), payload limits. Never throws.
Result<Message> Decode(const std::vector<std::string>& frames, const DecodeLimits& limits = {});
// The same checks; a valid message's payload frames are moved out of `frames` instead of copied
// (the hot path: a RESULT carries its videos inline). On an error nothing is moved.
Result<Message> Decode(std::vector<std::string>&& frames, const DecodeLimits& limits = {});

// Typed header access with clear errors: "READY: field 'stage' must be an integer".
Result<int64_t> GetInt(const Message& m, const char* field);
Result<std::string> GetString(const Message& m, const char* field);
Result<double> GetDouble(const Message& m, const char* field);
Result<bool> GetBool(const Message& m, const char* field);  // "... must be true or false"
// An optional flag: true only where the field is present and is the boolean true; absent, false
// or any other type reads as false.
bool FlagSet(const Message& m, const char* field);

// Binary video codec for payloads and blobs: lossless, with a checksum over the sample bytes.
//   "VFV2" | u32 channels | u32 frames | u32 height | u32 width | f64 fps | u32 crc32c | f32 data…
//   "VFH2" | the same header                                               | f16 data…
// (little-endian). A video whose every sample is exactly a binary16 value travels as VFH2, half
// the bytes: stage outputs are (StageRunner rounds them to fp16), sampler checkpoints (the latent
// has a video's shape) are not and stay f32. Decoding also reads "VFV1", the VFV2 layout with
// CRC-32 (IEEE), which databases written before hold.
enum class VideoSamples { kHalfWhenExact, kFloat32 };
std::string EncodeVideo(const Video& v, VideoSamples samples = VideoSamples::kHalfWhenExact);
Result<Video> DecodeVideo(std::string_view bytes);  // Corruption on any mismatch
// Every check of DecodeVideo (header, size, checksum, channels, fps, finite samples) without
// converting the samples: the Video it returns has the shape and fps, and no data.
Result<Video> VerifyVideo(std::string_view bytes);

}  // namespace vidfarm::wire
