#include "vidfarm/coordinator/client.h"

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <random>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace vidfarm::coordinator {

using nlohmann::json;
using wire::Command;

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool IsTerminalEvent(const std::string& type) {
  return type == "done" || type == "failed" || type == "cancelled";
}

}  // namespace

Status StatusFromError(const json& header) {
  std::string error = "coordinator error";
  std::string code;
  if (header.contains("error") && header["error"].is_string()) error = header["error"];
  if (header.contains("code") && header["code"].is_string()) code = header["code"];
  if (code == "not_found") return Status::NotFound(error);
  if (code == "bad_request" || code == "bad_state" || code == "unknown_command") {
    return Status::InvalidArgument(error);
  }
  if (code == "disk_full") return Status::ResourceExhausted(error);
  if (code == "corruption") return Status::Corruption(error);
  if (code == "unsupported_version") return Status::NotSupported(error);
  if (code == "storage") return Status::IOError(error);
  return Status::Internal(code.empty() ? error : code + ": " + error);
}

Client::Client(std::string endpoint, std::unique_ptr<zmq::socket_t> socket, int timeout_ms)
    : endpoint_(std::move(endpoint)), socket_(std::move(socket)), timeout_ms_(timeout_ms) {
  std::random_device rd;
  rid_prefix_ = fmt::format("c{:08x}-", rd());
}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Connect(const std::string& endpoint, zmq::context_t* ctx,
                                                int timeout_ms) {
  if (!ctx) return Status::InvalidArgument("client: no ZeroMQ context");
  if (timeout_ms <= 0) return Status::InvalidArgument("client: timeout_ms must be positive");
  try {
    auto s = std::make_unique<zmq::socket_t>(*ctx, zmq::socket_type::dealer);
    s->set(zmq::sockopt::linger, 0);
    s->connect(endpoint);
    return std::unique_ptr<Client>(new Client(endpoint, std::move(s), timeout_ms));
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(
        fmt::format("client: cannot connect to coordinator at {}: {}", endpoint, e.what()));
  }
}

std::string Client::NextRid() { return rid_prefix_ + std::to_string(next_rid_++); }

Status Client::TimedOutError() const {
  return Status::TimedOut(
      fmt::format("no answer from coordinator at {} within {} ms", endpoint_, timeout_ms_));
}

Status Client::Send(Command command, const json& header) {
  try {
    auto frames = wire::Encode(wire::Message{command, header, {}});
    for (size_t i = 0; i < frames.size(); ++i) {
      const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (!socket_->send(zmq::buffer(frames[i]), flags | zmq::send_flags::dontwait)) {
        return Status::Busy(fmt::format("send queue to coordinator at {} is full", endpoint_));
      }
    }
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::IOError(fmt::format("sending to coordinator at {}: {}", endpoint_, e.what()));
  }
}

Result<wire::Message> Client::Receive(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  try {
    for (;;) {
      const int64_t left = deadline - NowMs();
      if (left <= 0) return TimedOutError();
      zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(left));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(*socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        continue;
      }
      std::vector<std::string> frames;
      for (auto& p : parts) frames.push_back(p.to_string());
      auto m = wire::Decode(std::move(frames));
      if (!m.ok()) continue;  // not ours to answer; wait for a good one
      return m;
    }
  } catch (const zmq::error_t& e) {
    return Status::IOError(
        fmt::format("receiving from coordinator at {}: {}", endpoint_, e.what()));
  }
}

Result<json> Client::Call(Command command, json header) {
  if (!header.is_object()) return Status::InvalidArgument("client: header must be a JSON object");
  if (!header.contains("rid")) header["rid"] = NextRid();
  const std::string rid = header["rid"].is_string() ? header["rid"].get<std::string>() : "";
  VF_RETURN_NOT_OK(Send(command, header));
  const int64_t deadline = NowMs() + timeout_ms_;
  for (;;) {
    const int64_t left = deadline - NowMs();
    if (left <= 0) return TimedOutError();
    auto m = Receive(static_cast<int>(left));
    if (!m.ok()) return m.status();
    auto r = m->header.find("rid");
    if (r == m->header.end() || !r->is_string() || *r != rid) continue;  // a late answer
    if (m->command == Command::kError) return StatusFromError(m->header);
    if (m->command == Command::kReply) return std::move(m->header);
  }
}

Result<std::vector<std::string>> Client::Submit(const std::vector<json>& specs) {
  VF_ASSIGN_OR_RETURN(json reply, Call(Command::kSubmit, {{"jobs", specs}}));
  std::vector<std::string> ids;
  if (!reply.contains("jobs") || !reply["jobs"].is_array()) {
    return Status::Internal("SUBMIT reply without 'jobs'");
  }
  for (const auto& id : reply["jobs"]) {
    if (id.is_string()) ids.push_back(id);
  }
  return ids;
}

Status Client::Watch(const std::string& job, const std::function<bool(const json&)>& on_event) {
  const std::string rid = NextRid();
  const json req = {{"rid", rid}, {"job", job}};
  VF_RETURN_NOT_OK(Send(Command::kWatch, req));
  int64_t last_heard = NowMs();
  int64_t next_ping = last_heard + timeout_ms_;
  for (;;) {
    const int64_t now = NowMs();
    if (now - last_heard > 2 * static_cast<int64_t>(timeout_ms_)) return TimedOutError();
    if (now >= next_ping) {
      // Re-sending the WATCH (same rid) is idempotent and re-registers us after a restart.
      VF_RETURN_NOT_OK(Send(Command::kWatch, req));
      next_ping = now + timeout_ms_;
    }
    auto m = Receive(static_cast<int>(std::max<int64_t>(1, next_ping - NowMs())));
    if (!m.ok()) {
      if (m.status().code() == Status::Code::kTimedOut) continue;
      return m.status();
    }
    auto r = m->header.find("rid");
    if (r == m->header.end() || !r->is_string() || *r != rid) continue;
    last_heard = NowMs();
    if (m->command == Command::kError) return StatusFromError(m->header);
    if (m->command != Command::kEvent) continue;
    const std::string type =
        m->header.contains("type") && m->header["type"].is_string() ? m->header["type"] : "";
    if (!on_event(m->header)) return Status::OK();
    if (IsTerminalEvent(type)) return Status::OK();
  }
}

Result<std::string> Client::FetchBlob(const std::string& key, int credit) {
  if (credit < 1) credit = 1;
  constexpr int64_t kAsk = 1 << 20;  // the coordinator may answer with less (its chunk_bytes)
  const std::string rid = NextRid();
  auto fetch = [&](int64_t offset, int64_t length) {
    return Send(Command::kFetch,
                {{"rid", rid}, {"blob", key}, {"offset", offset}, {"length", length}});
  };
  std::string out;
  int64_t total = -1, received = 0, next = 0, chunk = kAsk;
  int outstanding = 0;
  std::map<int64_t, int64_t> expected;  // offset → length asked
  VF_RETURN_NOT_OK(fetch(0, kAsk));
  expected[0] = kAsk;
  outstanding = 1;
  while (total < 0 || received < total) {
    auto m = Receive(timeout_ms_);
    if (!m.ok()) return m.status();
    auto r = m->header.find("rid");
    if (r == m->header.end() || !r->is_string() || *r != rid) continue;
    if (m->command == Command::kError) return StatusFromError(m->header);
    if (m->command != Command::kChunk || m->payload.size() != 1) continue;
    auto off = wire::GetInt(*m, "offset");
    auto tot = wire::GetInt(*m, "total");
    if (!off.ok() || !tot.ok()) return Status::Corruption("CHUNK without offset/total");
    auto ex = expected.find(*off);
    if (ex == expected.end()) continue;  // a duplicate
    const std::string& data = m->payload[0];
    bool first = false;
    if (total < 0) {
      first = true;
      total = *tot;
      if (total < 0 || (*off != 0)) return Status::Corruption("bad first CHUNK");
      out.resize(total);
      if (!data.empty() && static_cast<int64_t>(data.size()) < total) {
        chunk = static_cast<int64_t>(data.size());
      } else if (data.empty() && total > 0) {
        return Status::Corruption(fmt::format("empty CHUNK for blob '{}'", key));
      }
      next = static_cast<int64_t>(data.size());
    } else if (*tot != total) {
      return Status::Corruption(fmt::format("blob '{}' changed size during download", key));
    }
    if (*off + static_cast<int64_t>(data.size()) > total) {
      return Status::Corruption(fmt::format("CHUNK past the end of blob '{}'", key));
    }
    std::copy(data.begin(), data.end(), out.begin() + *off);
    received += static_cast<int64_t>(data.size());
    const int64_t asked = std::min(ex->second, total - *off);
    expected.erase(ex);
    --outstanding;
    if (!first && static_cast<int64_t>(data.size()) < asked) {
      // A short answer: ask for the rest of that range.
      if (data.empty()) return Status::Corruption(fmt::format("empty CHUNK for blob '{}'", key));
      const int64_t o = *off + static_cast<int64_t>(data.size());
      VF_RETURN_NOT_OK(fetch(o, asked - static_cast<int64_t>(data.size())));
      expected[o] = asked - static_cast<int64_t>(data.size());
      ++outstanding;
    }
    while (outstanding < credit && next < total) {
      const int64_t n = std::min(chunk, total - next);
      VF_RETURN_NOT_OK(fetch(next, n));
      expected[next] = n;
      next += n;
      ++outstanding;
    }
  }
  return out;
}

}  // namespace vidfarm::coordinator
