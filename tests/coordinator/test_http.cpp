// The HTTP gateway against a real coordinator, over real TCP on 127.0.0.1: the dashboard, the JSON
// API (status, list, submit, job control, video download), Prometheus metrics, and bad requests,
// after which the gateway still answers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "coord_test_util.h"
#include "vidfarm/coordinator/http.h"

namespace vidfarm::coordinator::testing {
namespace {

struct HttpReply {
  int status = 0;
  std::string headers, body;
};

// One request on a fresh connection; the gateway closes it after the answer.
HttpReply Http(int port, const std::string& raw) {
  HttpReply r;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return r;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return r;
  }
  size_t sent = 0;
  while (sent < raw.size()) {
    const ssize_t n = send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string all;
  char buf[65536];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    all.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t split = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || split == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.headers = all.substr(0, split);
  r.body = all.substr(split + 4);
  return r;
}

HttpReply Get(int port, const std::string& target) {
  return Http(port, "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

HttpReply Post(int port, const std::string& target, const std::string& body) {
  return Http(port, "POST " + target +
                        " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(farm.Start());
    HttpOptions o;
    o.listen = "127.0.0.1:0";
    o.api_endpoint = farm.coord->api_endpoint();
    o.timeout_ms = 3000;
    o.max_body_bytes = 64 << 10;
    auto g = HttpGateway::Start(o, &farm.ctx);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    gateway = std::move(*g);
    port = gateway->port();
    ASSERT_GT(port, 0);
  }
  void TearDown() override {
    if (gateway) gateway->Stop();
    farm.Stop();
  }
  Farm farm;
  std::unique_ptr<HttpGateway> gateway;
  int port = 0;
};

TEST_F(HttpTest, DashboardStatusAndMetrics) {
  EXPECT_EQ(gateway->url(), "http://127.0.0.1:" + std::to_string(port));
  auto page = Get(port, "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.headers.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("<title>vidfarm</title>"), std::string::npos);
  EXPECT_NE(page.body.find("/api/status"), std::string::npos);

  auto st = Get(port, "/api/status");
  ASSERT_EQ(st.status, 200) << st.body;
  const json s = json::parse(st.body);
  EXPECT_EQ(s["jobs"]["queued"], 0);
  EXPECT_EQ(s["ready"].size(), 7u);
  EXPECT_FALSE(s.contains("rid"));

  farm.Submit({Spec("a red circle moving right", 3)});
  auto m = Get(port, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.headers.find("text/plain"), std::string::npos);
  EXPECT_NE(m.body.find("# TYPE vidfarm_jobs gauge"), std::string::npos);
  EXPECT_NE(m.body.find("vidfarm_jobs{state=\"queued\"} 1\n"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("vidfarm_ready_tasks{stage=\"0\"} 1\n"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("vidfarm_store_commits_total "), std::string::npos);
  EXPECT_NE(m.body.find("vidfarm_loop_seconds_total{state=\"busy\"} "), std::string::npos);
  EXPECT_NE(m.body.find("vidfarm_loop_seconds_total{state=\"waiting\"} "), std::string::npos);
}

TEST_F(HttpTest, SubmitListControlAndFetchTheVideo) {
  auto one = Post(port, "/api/jobs", R"({"prompt": "a blue square moving up", "seed": 2})");
  ASSERT_EQ(one.status, 201) << one.body;
  const std::string a = json::parse(one.body)["jobs"][0];
  auto two = Post(port, "/api/jobs",
                  R"({"jobs": [{"prompt": "a cat", "priority": 5}, {"prompt": "a dog"}]})");
  ASSERT_EQ(two.status, 201) << two.body;
  EXPECT_EQ(json::parse(two.body)["jobs"].size(), 2u);
  auto arr = Post(port, "/api/jobs", R"([{"prompt": "a bird"}])");
  ASSERT_EQ(arr.status, 201) << arr.body;

  auto list = Get(port, "/api/jobs?state=queued&limit=10");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(json::parse(list.body)["jobs"].size(), 4u);
  auto job = Get(port, "/api/jobs/" + a);
  ASSERT_EQ(job.status, 200);
  EXPECT_EQ(json::parse(job.body)["job"]["prompt"], "a blue square moving up");

  // Job control goes through to the coordinator.
  ASSERT_EQ(Post(port, "/api/jobs/" + a + "/pause", "").status, 200);
  EXPECT_EQ(farm.Job(a)["state"], "paused");
  ASSERT_EQ(Post(port, "/api/jobs/" + a + "/resume", "").status, 200);
  EXPECT_NE(farm.Job(a)["state"], "paused");
  // No video before the job is done.
  EXPECT_EQ(Get(port, "/api/jobs/" + a + "/video").status, 409);

  // Drive job a to done with fake workers (priority 5's job goes first: cancel it and the rest).
  const json all = json::parse(Get(port, "/api/jobs").body);
  ASSERT_EQ(all["jobs"].size(), 4u);
  for (const auto& j : all["jobs"]) {
    if (j["id"] == a) continue;
    ASSERT_EQ(Post(port, "/api/jobs/" + j["id"].get<std::string>() + "/cancel", "").status, 200);
  }
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int s = 0; s < 7; ++s) workers.push_back(farm.Worker(s));
  for (int s = 0; s < 7; ++s) ASSERT_TRUE(workers[s]->RunOne(1, -0.5f + 0.1f * s)) << "stage " << s;
  ASSERT_TRUE(farm.WaitState(a, "done"));
  auto video = Get(port, "/api/jobs/" + a + "/video");
  ASSERT_EQ(video.status, 200);
  EXPECT_NE(video.headers.find("video/mp4"), std::string::npos);
  auto blob = farm.client->FetchBlob(farm.Job(a)["output_blob"]);
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(video.body, *blob);
  auto workers_reply = Get(port, "/api/workers");
  ASSERT_EQ(workers_reply.status, 200);
  EXPECT_EQ(json::parse(workers_reply.body)["workers"].size(), 7u);
}

TEST_F(HttpTest, BadRequestsGetErrorsAndTheGatewayStaysUp) {
  auto missing = Get(port, "/api/jobs/j-nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(json::parse(missing.body).contains("error"));
  EXPECT_EQ(Get(port, "/nowhere").status, 404);
  EXPECT_EQ(Get(port, "/api/jobs/x/explode").status, 404);
  EXPECT_EQ(Post(port, "/api/status", "{}").status, 405);
  EXPECT_EQ(Http(port, "DELETE /api/jobs HTTP/1.1\r\nHost: x\r\n\r\n").status, 405);
  EXPECT_EQ(Post(port, "/api/jobs", "not json").status, 400);
  EXPECT_EQ(Post(port, "/api/jobs", "[]").status, 400);
  auto bad_spec = Post(port, "/api/jobs", R"({"prompt": "", "seed": -4})");
  EXPECT_EQ(bad_spec.status, 400) << bad_spec.body;
  EXPECT_EQ(Get(port, "/api/jobs?limit=many").status, 400);
  EXPECT_EQ(Get(port, "/api/jobs?state=sleeping").status, 400);
  // A body over the limit is refused from its Content-Length, before it is read.
  EXPECT_EQ(
      Http(port, "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n").status,
      413);
  EXPECT_EQ(Http(port, "this is not http\r\n\r\n").status, 400);
  // Nothing was queued by any of it, and the next good request is answered.
  auto st = Get(port, "/api/status");
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(json::parse(st.body)["total_jobs"], 0);
}

TEST(HttpGatewayStart, RejectsBadAddresses) {
  zmq::context_t ctx(1);
  HttpOptions o;
  o.api_endpoint = "tcp://127.0.0.1:1";
  o.listen = "no-port";
  EXPECT_TRUE(HttpGateway::Start(o, &ctx).status().IsInvalidArgument());
  o.listen = "127.0.0.1:99999";
  EXPECT_TRUE(HttpGateway::Start(o, &ctx).status().IsInvalidArgument());
  o.listen = "not-an-address:80";
  EXPECT_TRUE(HttpGateway::Start(o, &ctx).status().IsInvalidArgument());
  o.listen = "127.0.0.1:0";
  o.api_endpoint = "";
  EXPECT_TRUE(HttpGateway::Start(o, &ctx).status().IsInvalidArgument());
}

}  // namespace
}  // namespace vidfarm::coordinator::testing
