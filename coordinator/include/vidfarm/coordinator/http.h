// The farm's HTTP face: a JSON API, Prometheus metrics and a dashboard page, served by Boost.Beast
// on a thread of its own. It keeps no state: every request becomes calls on the coordinator's
// client API (coordinator::Client over ZeroMQ), so it serves an embedded coordinator and a remote
// one alike, and a slow or bad HTTP client never touches the coordinator's loop.
//
//   GET  /                          the dashboard (jobs by state, workers, queues, disk; refreshes)
//   GET  /api/status                STATUS: counts, workers, queues, store and disk use
//   GET  /api/jobs[?state=S&limit=N] LIST
//   GET  /api/jobs/JOB              STATUS of one job
//   GET  /api/jobs/JOB/video        the finished job's encoded video (video/mp4, video/webm, …)
//   GET  /api/workers               WORKERS
//   POST /api/jobs                  SUBMIT: a job spec object, an array of them, or {"jobs":[…]};
//                                   answers {"jobs":[ids]} (201)
//   POST /api/jobs/JOB/{cancel,pause,resume,retry}
//   GET  /metrics                   Prometheus text: jobs by state, workers by state, READY tasks
//                                   per stage, store commits and syncs, disk bytes
//
// Errors answer {"error": message} with 400 (bad request), 404, 405, 413 (body too large), 504
// (coordinator silent), 507 (disk full) or 500.
#pragma once

#include <memory>
#include <string>

#include "vidfarm/common/status.h"

namespace zmq {
class context_t;
}

namespace vidfarm::coordinator {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";  // HOST:PORT to listen on; port 0 picks a free one
  std::string api_endpoint;               // the coordinator's client endpoint (tcp:// or inproc://)
  int timeout_ms = 10000;                 // per coordinator call, and per HTTP read or write
  size_t max_body_bytes = 4 << 20;        // largest POST body (a batch of job specs)
};

class HttpGateway {
 public:
  // Binds and starts serving; fails on an address that cannot be bound.
  static Result<std::unique_ptr<HttpGateway>> Start(const HttpOptions& options,
                                                    zmq::context_t* ctx);
  ~HttpGateway();  // Stop()
  void Stop();
  int port() const;
  std::string url() const;  // http://HOST:PORT

  class Impl;

 private:
  explicit HttpGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vidfarm::coordinator
