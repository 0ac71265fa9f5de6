// Synchronous client of the coordinator's API socket (a DEALER; requests and answers matched by
// "rid"). Not thread-safe: one Client per thread.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vidfarm/common/status.h"
#include "vidfarm/common/wire.h"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace vidfarm::coordinator {

class Client {
 public:
  // Connects (ZeroMQ connects lazily: a missing coordinator shows up as TimedOut on the first
  // call). timeout_ms bounds each wait for an answer.
  static Result<std::unique_ptr<Client>> Connect(const std::string& endpoint, zmq::context_t* ctx,
                                                 int timeout_ms = 10000);
  ~Client();

  // Sends `command` with `header` (a "rid" is added unless present) and waits for its REPLY.
  // ERROR answers become a Status: not_found → NotFound, bad_request → InvalidArgument,
  // bad_state → InvalidArgument, disk_full → ResourceExhausted, corruption → Corruption, ...
  // No answer within timeout_ms → TimedOut "no answer from coordinator at …".
  Result<nlohmann::json> Call(wire::Command command, nlohmann::json header);

  // WATCH: calls `on_event` with each EVENT {rid, job, type, data} until a terminal event (done,
  // failed, cancelled) or until on_event returns false. While waiting it re-sends the WATCH every
  // timeout_ms (so a restarted coordinator picks the watch up again); a coordinator silent for
  // two such periods gives TimedOut.
  Status Watch(const std::string& job, const std::function<bool(const nlohmann::json&)>& on_event);

  // Downloads a whole blob with chunked FETCH, keeping up to `credit` requests outstanding.
  Result<std::string> FetchBlob(const std::string& key, int credit = 8);

  // Convenience: SUBMIT → the new job ids, in order.
  Result<std::vector<std::string>> Submit(const std::vector<nlohmann::json>& specs);

  const std::string& endpoint() const { return endpoint_; }

 private:
  Client(std::string endpoint, std::unique_ptr<zmq::socket_t> socket, int timeout_ms);
  std::string NextRid();
  Status Send(wire::Command command, const nlohmann::json& header);
  // Waits up to timeout_ms for one decodable message; TimedOut when none came.
  Result<wire::Message> Receive(int timeout_ms);
  Status TimedOutError() const;

  std::string endpoint_;
  std::unique_ptr<zmq::socket_t> socket_;
  int timeout_ms_;
  uint64_t next_rid_ = 1;
  std::string rid_prefix_;
};

// Maps an ERROR header {error, code} to a Status.
Status StatusFromError(const nlohmann::json& header);

}  // namespace vidfarm::coordinator
