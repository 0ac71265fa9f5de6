// End to end in one process: the real Coordinator, seven Workers (one per stage) on inproc://,
// one job submitted through the client API. The farm's last-stage video must equal, bit for bit,
// the embedded cascade's render of the same prompt, seed and steps.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <thread>
#include <zmq.hpp>

#include "vidfarm/common/job_spec.h"
#include "vidfarm/common/wire.h"
#include "vidfarm/coordinator/client.h"
#include "vidfarm/coordinator/coordinator.h"
#include "vidfarm/stage_models/cascade.h"
#include "vidfarm/worker/worker.h"

namespace vidfarm::worker {
namespace {

namespace fs = std::filesystem;

TEST(FarmTest, OneJobThroughCoordinatorAndSevenWorkersMatchesEmbeddedRender) {
  torch::set_num_threads(1);  // seven compute threads on two cores
  const fs::path db = fs::temp_directory_path() / ("vf-farm-test-" + std::to_string(getpid()));
  fs::remove_all(db);
  zmq::context_t ctx;

  coordinator::CoordinatorOptions co;
  co.db_path = db.string();
  co.worker_endpoint = "inproc://vf-farm-test-workers";
  co.api_endpoint = "inproc://vf-farm-test-api";
  co.min_free_bytes = 0;
  auto coord = coordinator::Coordinator::Start(co, &ctx);
  ASSERT_TRUE(coord.ok()) << coord.status().ToString();

  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  for (int k = 0; k < 7; ++k) {
    WorkerOptions o;
    o.endpoint = (*coord)->worker_endpoint();
    o.stage = k;
    o.checkpoint_every = 1;
    auto w = Worker::Create(o, &ctx);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    workers.push_back(std::move(*w));
  }
  for (auto& w : workers) {
    threads.emplace_back([&w] {
      Status st = w->Run();
      EXPECT_TRUE(st.ok()) << st.ToString();
    });
  }

  JobSpec spec;
  spec.prompt = "a red circle moving right";
  spec.seed = 21;
  spec.steps.assign(7, 2);
  spec.keep_intermediates = true;
  auto client = coordinator::Client::Connect((*coord)->api_endpoint(), &ctx, 60000);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto ids = (*client)->Submit({spec.ToJson()});
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  ASSERT_EQ(ids->size(), 1u);
  const std::string job = ids->front();

  std::string last;
  Status watched = (*client)->Watch(job, [&](const nlohmann::json& ev) {
    last = ev.value("type", "");
    return true;
  });
  EXPECT_TRUE(watched.ok()) << watched.ToString();
  EXPECT_EQ(last, "done");
  auto status = (*client)->Call(wire::Command::kStatus, {{"job", job}});
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->dump().find("\"state\":\"done\"") != std::string::npos, true) << status->dump();

  // "<job>/<stage>/out" is the coordinator's key for a stage output (kept: keep_intermediates).
  auto bytes = (*client)->FetchBlob(job + "/6/out");
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto farm = wire::DecodeVideo(*bytes);
  ASSERT_TRUE(farm.ok()) << farm.status().ToString();

  int64_t done = 0;
  for (auto& w : workers) w->Stop();
  for (auto& t : threads) t.join();
  for (auto& w : workers) done += w->stats().done;
  EXPECT_EQ(done, 7);
  (*coord)->Stop();
  fs::remove_all(db);

  models::CascadeOptions eo;
  eo.force_random_weights = true;
  for (int k = 0; k < 7; ++k) eo.overrides.push_back(OverridesFromSpec(spec, k));
  auto cascade = models::Cascade::Open(eo);
  ASSERT_TRUE(cascade.ok()) << cascade.status().ToString();
  auto embedded = (*cascade)->Render(spec.prompt, spec.seed);
  ASSERT_TRUE(embedded.ok()) << embedded.status().ToString();
  EXPECT_EQ(farm->ShapeString(), embedded->ShapeString());
  EXPECT_TRUE(farm->data == embedded->data) << "farm and embedded renders differ";
}

}  // namespace
}  // namespace vidfarm::worker
