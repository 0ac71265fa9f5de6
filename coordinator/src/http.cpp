#include "vidfarm/coordinator/http.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "vidfarm/common/log.h"
#include "vidfarm/common/thread_name.h"
#include "vidfarm/coordinator/client.h"

namespace vidfarm::coordinator {
namespace detail {
extern const char kDashboardHtml[];  // dashboard.cpp
}  // namespace detail
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Answer {
  http::status status = http::status::ok;
  std::string content_type = "application/json";
  std::string body;
};

Answer JsonAnswer(const json& j, http::status s = http::status::ok) {
  return {s, "application/json", j.dump()};
}

Answer ErrorAnswer(http::status s, const std::string& message) {
  return JsonAnswer({{"error", message}}, s);
}

Answer FromStatus(const Status& st) {
  http::status s = http::status::internal_server_error;
  switch (st.code()) {
    case Status::Code::kNotFound:
      s = http::status::not_found;
      break;
    case Status::Code::kInvalidArgument:
      s = http::status::bad_request;
      break;
    case Status::Code::kResourceExhausted:
      s = http::status::insufficient_storage;
      break;
    case Status::Code::kTimedOut:
      s = http::status::gateway_timeout;
      break;
    default:
      break;
  }
  return ErrorAnswer(s, st.message());
}

// "/a/b?x=1&y=2" → path "/a/b", query {x: 1, y: 2} (no percent-decoding: ids and states are plain).
void SplitTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* q) {
  const size_t qm = target.find('?');
  *path = std::string(target.substr(0, qm));
  if (qm == std::string_view::npos) return;
  std::string_view rest = target.substr(qm + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    const size_t eq = kv.find('=');
    if (!kv.empty()) {
      (*q)[std::string(kv.substr(0, eq))] =
          eq == std::string_view::npos ? "" : std::string(kv.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
}

std::vector<std::string> PathParts(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const size_t j = path.find('/', i);
    parts.push_back(path.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos) break;
    i = j;
  }
  return parts;
}

// The coordinator names a finished job's video "JOB/final.FORMAT" (mp4, webm or gif).
std::string VideoContentType(const std::string& key) {
  const std::string ext = key.substr(key.rfind('.') + 1);
  if (ext == "mp4") return "video/mp4";
  if (ext == "webm") return "video/webm";
  if (ext == "gif") return "image/gif";
  return "application/octet-stream";
}

// Prometheus text exposition of a STATUS reply.
std::string Metrics(const json& s) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  const json jobs = s.value("jobs", json::object()), workers = s.value("workers", json::object());
  family("vidfarm_jobs", "gauge", "Jobs by state.");
  for (const auto& [state, n] : jobs.items()) {
    out += fmt::format("vidfarm_jobs{{state=\"{}\"}} {}\n", state, n.get<int64_t>());
  }
  family("vidfarm_workers", "gauge", "Workers by state.");
  for (const auto& [state, n] : workers.items()) {
    out += fmt::format("vidfarm_workers{{state=\"{}\"}} {}\n", state, n.get<int64_t>());
  }
  family("vidfarm_ready_tasks", "gauge", "READY tasks waiting per stage.");
  const json ready = s.value("ready", json::array());
  for (size_t k = 0; k < ready.size(); ++k) {
    out += fmt::format("vidfarm_ready_tasks{{stage=\"{}\"}} {}\n", k, ready[k].get<int64_t>());
  }
  family("vidfarm_leases", "gauge", "Leases held by workers.");
  out += fmt::format("vidfarm_leases {}\n", s.value("leases", int64_t{0}));
  const json store = s.value("store", json::object());
  family("vidfarm_store_commits_total", "counter", "RocksDB write batches committed.");
  out += fmt::format("vidfarm_store_commits_total {}\n", store.value("commits", uint64_t{0}));
  family("vidfarm_store_syncs_total", "counter", "WAL syncs (group commit).");
  out += fmt::format("vidfarm_store_syncs_total {}\n", store.value("syncs", uint64_t{0}));
  family("vidfarm_store_seconds_total", "counter",
         "Coordinator time in store writes (its loop) and WAL syncs (its syncer thread).");
  out +=
      fmt::format("vidfarm_store_seconds_total{{op=\"write\"}} {}\n", store.value("commit_s", 0.0));
  out += fmt::format("vidfarm_store_seconds_total{{op=\"sync\"}} {}\n", store.value("sync_s", 0.0));
  const json loop = s.value("loop", json::object());
  family("vidfarm_loop_seconds_total", "counter",
         "Coordinator loop time working and waiting for messages (busy near 100 % = saturated).");
  out +=
      fmt::format("vidfarm_loop_seconds_total{{state=\"busy\"}} {}\n", loop.value("busy_s", 0.0));
  out += fmt::format("vidfarm_loop_seconds_total{{state=\"waiting\"}} {}\n",
                     loop.value("wait_s", 0.0));
  const json disk = s.value("disk", json());
  if (disk.is_object()) {
    family("vidfarm_disk_bytes", "gauge", "Database size and free space.");
    for (const char* k : {"total_bytes", "blob_bytes", "sst_bytes", "free_bytes"}) {
      out += fmt::format("vidfarm_disk_bytes{{kind=\"{}\"}} {}\n",
                         std::string_view(k).substr(0, std::string_view(k).size() - 6),
                         disk.value(k, uint64_t{0}));
    }
  }
  return out;
}

}  // namespace

class HttpGateway::Impl {
 public:
  Impl(HttpOptions o, zmq::context_t* ctx) : opts_(std::move(o)), ctx_(ctx) {}

  Status Bind() {
    const size_t colon = opts_.listen.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::InvalidArgument(
          fmt::format("http: listen address '{}' is not HOST:PORT", opts_.listen));
    }
    const std::string host = opts_.listen.substr(0, colon);
    int port = -1;
    try {
      port = std::stoi(opts_.listen.substr(colon + 1));
    } catch (const std::exception&) {
    }
    if (port < 0 || port > 65535) {
      return Status::InvalidArgument(fmt::format("http: bad port in '{}'", opts_.listen));
    }
    beast::error_code ec;
    const auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
    if (ec)
      return Status::InvalidArgument(fmt::format("http: bad host '{}': {}", host, ec.message()));
    const tcp::endpoint ep(addr, static_cast<unsigned short>(port));
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec)
      acceptor_.non_blocking(true, ec);  // the loop polls, so Stop() needs no cross-thread close
    if (ec) {
      return Status::IOError(
          fmt::format("http: cannot listen on {}: {}", opts_.listen, ec.message()));
    }
    host_ = addr.to_string();
    port_ = acceptor_.local_endpoint().port();
    return Status::OK();
  }

  // client_ is connected by Start() and used only here from then on.
  void Run() {
    NameThisThread("vf-http");
    while (!stop_) {
      beast::error_code ec;
      tcp::socket sock(io_);
      acceptor_.accept(sock, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      if (ec) {
        VF_LOG_WARN("http: accept: {}", ec.message());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      Serve(sock);
    }
  }

  void Serve(tcp::socket& sock) {
    beast::error_code ec;
    sock.non_blocking(false, ec);
    // Bounded reads and writes: a client that stalls cannot hold the gateway.
    timeval tv{opts_.timeout_ms / 1000, (opts_.timeout_ms % 1000) * 1000};
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    parser.body_limit(opts_.max_body_bytes);
    parser.header_limit(16 << 10);
    http::read(sock, buffer, parser, ec);
    Response res;
    res.version(11);
    if (ec == http::error::body_limit) {
      Fill(res, ErrorAnswer(http::status::payload_too_large,
                            fmt::format("body over {} bytes", opts_.max_body_bytes)));
    } else if (ec) {
      if (ec == http::error::end_of_stream) return;  // connected and left
      Fill(res, ErrorAnswer(http::status::bad_request, "malformed HTTP request: " + ec.message()));
    } else {
      const Request& req = parser.get();
      Answer a;
      try {
        a = Route(req);
      } catch (const std::exception& e) {  // a coordinator answer of an unexpected shape
        a = ErrorAnswer(http::status::internal_server_error, e.what());
      }
      Fill(res, a);
      if (req.method() == http::verb::head) res.body().clear();
    }
    res.keep_alive(false);
    res.prepare_payload();
    http::write(sock, res, ec);
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }

  static void Fill(Response& res, const Answer& a) {
    res.result(a.status);
    res.set(http::field::server, "vidfarm");
    res.set(http::field::content_type, a.content_type);
    res.set(http::field::cache_control, "no-store");
    res.body() = a.body;
  }

  Answer Call(wire::Command c, json header, http::status ok = http::status::ok) {
    auto r = client_->Call(c, std::move(header));
    if (!r.ok()) return FromStatus(r.status());
    r->erase("rid");
    return JsonAnswer(*r, ok);
  }

  Answer Route(const Request& req) {
    std::string path;
    std::map<std::string, std::string> query;
    SplitTarget(std::string_view(req.target().data(), req.target().size()), &path, &query);
    const auto parts = PathParts(path);
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    const bool post = req.method() == http::verb::post;
    auto not_allowed = [] {
      return ErrorAnswer(http::status::method_not_allowed, "method not allowed");
    };

    if (parts.empty()) {
      if (!get) return not_allowed();
      return {http::status::ok, "text/html; charset=utf-8", detail::kDashboardHtml};
    }
    if (parts.size() == 1 && parts[0] == "metrics") {
      if (!get) return not_allowed();
      auto r = client_->Call(wire::Command::kStatus, json::object());
      if (!r.ok()) return FromStatus(r.status());
      return {http::status::ok, "text/plain; version=0.0.4", Metrics(*r)};
    }
    if (parts[0] != "api" || parts.size() < 2)
      return ErrorAnswer(http::status::not_found, "no such page: " + path);
    const std::string& what = parts[1];
    if (what == "status" && parts.size() == 2) {
      if (!get) return not_allowed();
      return Call(wire::Command::kStatus, json::object());
    }
    if (what == "workers" && parts.size() == 2) {
      if (!get) return not_allowed();
      return Call(wire::Command::kWorkers, json::object());
    }
    if (what == "jobs" && parts.size() == 2) {
      if (post) return Submit(req.body());
      if (!get) return not_allowed();
      json h = json::object();
      if (auto it = query.find("state"); it != query.end() && !it->second.empty())
        h["state"] = it->second;
      if (auto it = query.find("limit"); it != query.end()) {
        try {
          h["limit"] = std::stoll(it->second);
        } catch (const std::exception&) {
          return ErrorAnswer(http::status::bad_request, "limit must be a positive integer");
        }
      }
      return Call(wire::Command::kList, h);
    }
    if (what == "jobs" && parts.size() == 3) {
      if (!get) return not_allowed();
      return Call(wire::Command::kStatus, {{"job", parts[2]}});
    }
    if (what == "jobs" && parts.size() == 4 && parts[3] == "video") {
      if (!get) return not_allowed();
      return Video(parts[2]);
    }
    if (what == "jobs" && parts.size() == 4) {
      static const std::map<std::string, wire::Command> kControls = {
          {"cancel", wire::Command::kCancelJob},
          {"pause", wire::Command::kPause},
          {"resume", wire::Command::kResume},
          {"retry", wire::Command::kRetry}};
      auto c = kControls.find(parts[3]);
      if (c == kControls.end())
        return ErrorAnswer(http::status::not_found, "no such page: " + path);
      if (!post) return not_allowed();
      return Call(c->second, {{"job", parts[2]}});
    }
    return ErrorAnswer(http::status::not_found, "no such page: " + path);
  }

  Answer Submit(const std::string& body) {
    const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return ErrorAnswer(http::status::bad_request, "the body is not JSON");
    json jobs;
    if (j.is_array()) {
      jobs = j;
    } else if (j.is_object() && j.contains("jobs")) {
      jobs = j["jobs"];
    } else if (j.is_object()) {
      jobs = json::array({j});
    }
    if (!jobs.is_array() || jobs.empty()) {
      return ErrorAnswer(http::status::bad_request,
                         "expected a job spec, an array of them, or {\"jobs\": [...]}");
    }
    return Call(wire::Command::kSubmit, {{"jobs", jobs}}, http::status::created);
  }

  Answer Video(const std::string& job) {
    auto r = client_->Call(wire::Command::kStatus, {{"job", job}});
    if (!r.ok()) return FromStatus(r.status());
    const json& j = (*r)["job"];
    if (j.value("state", "") != "done") {
      return ErrorAnswer(http::status::conflict,
                         fmt::format("job {} is {}: no video yet", job, j.value("state", "")));
    }
    const std::string key = j.value("output_blob", "");
    auto bytes = client_->FetchBlob(key);
    if (!bytes.ok()) return FromStatus(bytes.status());
    Answer a;
    a.content_type = VideoContentType(key);
    a.body = std::move(*bytes);
    return a;
  }

  HttpOptions opts_;
  zmq::context_t* ctx_;
  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  std::unique_ptr<Client> client_;
  std::string host_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

HttpGateway::HttpGateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpGateway::~HttpGateway() { Stop(); }

Result<std::unique_ptr<HttpGateway>> HttpGateway::Start(const HttpOptions& options,
                                                        zmq::context_t* ctx) {
  if (options.api_endpoint.empty()) return Status::InvalidArgument("http: no coordinator endpoint");
  auto impl = std::make_unique<Impl>(options, ctx);
  try {
    VF_RETURN_NOT_OK(impl->Bind());
    VF_ASSIGN_OR_RETURN(impl->client_,
                        Client::Connect(options.api_endpoint, ctx, options.timeout_ms));
  } catch (const std::exception& e) {
    return Status::IOError(fmt::format("http: cannot listen on {}: {}", options.listen, e.what()));
  }
  Impl* raw = impl.get();
  raw->thread_ = std::thread([raw] { raw->Run(); });
  VF_LOG_INFO("http: dashboard and API on http://{}:{}", raw->host_, raw->port_);
  return std::unique_ptr<HttpGateway>(new HttpGateway(std::move(impl)));
}

void HttpGateway::Stop() {
  if (!impl_ || !impl_->thread_.joinable()) return;
  impl_->stop_ = true;
  impl_->thread_.join();
  beast::error_code ec;
  impl_->acceptor_.close(ec);
}

int HttpGateway::port() const { return impl_->port_; }
std::string HttpGateway::url() const {
  return fmt::format("http://{}:{}", impl_->host_, impl_->port_);
}

}  // namespace vidfarm::coordinator
