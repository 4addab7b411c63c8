// What an operator instance sees of its worker (runtime/detail/operator_context.hpp):
// a worker with real shared state and a real memory backend opens an operator
// and the operator reads everything through its context.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

#include "meterstream/runtime/detail/operator_context.hpp"
#include "meterstream/runtime/detail/operator_instance.hpp"
#include "meterstream/runtime/detail/worker.hpp"
#include "meterstream/state/state_backend.hpp"

namespace ms = meterstream;
namespace md = meterstream::detail;

namespace {

// Records what its context says in open().
struct Probe final : md::OperatorInstance {
  void open(md::OperatorContext& context) override {
    opened = true;
    uid = context.ids().uid;
    name = context.ids().name;
    index = context.worker_index();
    parallelism = context.parallelism();
    max_parallelism = context.max_parallelism();
    key_groups = context.key_groups();
    batch_size = context.options().batch_size;
    backend = context.state_backend();
    share = context.operator_memory_share();
    checkpointing = context.checkpointing();
    requested = context.checkpoint_requested();
    restored_id = context.restored_id();
    part = context.restored_part();
    context.metrics().counter(md::operator_metric("probe_opened", name))->add(1);
    if (uid.empty()) {
      // Without a uid there is nothing to checkpoint state under.
      try {
        context.snapshot_of(1);
      } catch (const md::StatusError& e) {
        refused = e.status.code() == absl::StatusCode::kInternal;
      }
      return;
    }
    // A snapshot error fails that checkpoint, not the job.
    context.snapshot_step(1, [] { throw md::StatusError{absl::DataLossError("disk gone")}; });
    md::OperatorInstanceState& snap = context.snapshot_of(1);
    snapshot_op = snap.op;
    snapshot_worker = snap.worker;
    snapshot_key_groups = snap.key_groups;
  }
  bool opened = false;
  bool refused = false;  // snapshot_of() without a uid
  std::string uid, name, snapshot_op;
  int index = -1, parallelism = -1, max_parallelism = -1, snapshot_worker = -1;
  ms::KeyGroupRange key_groups, snapshot_key_groups;
  std::size_t batch_size = 0, share = 99;
  ms::StateBackend* backend = nullptr;
  bool checkpointing = true;
  std::int64_t requested = -1, restored_id = -1;
  const ms::detail::RestoredCheckpoint::Operator* part = nullptr;
};

}  // namespace

TEST_CASE("an operator sees its ids, key groups, backend and restored part through its context",
          "[runtime]") {
  ms::JobOptions options;
  options.max_parallelism = 8;
  options.batch_size = 77;
  md::WorkerShared shared(options);
  auto backend = ms::make_memory_state_backend();
  REQUIRE(backend.ok());
  shared.state_backend = *backend;
  shared.stateful_operators = 1;
  for (int w = 0; w < 2; ++w) shared.key_group_ranges.push_back(ms::key_group_range_for_worker(8, 2, w));
  for (int g = 0; g < 8; ++g) shared.key_group_owner.push_back(g < 4 ? 0 : 1);
  md::RestoredCheckpoint restored;
  restored.id = 41;
  restored.operators["window#3"].operator_states[1] = "state of worker 1";
  restored.operators["other#4"];
  shared.restored = &restored;
  shared.restored_id = restored.id;

  md::Worker worker(shared, 1, 2);
  Probe* probe = worker.add_operator(std::make_unique<Probe>(),
                                     md::OperatorIds{"window#3", "usage per minute"});
  Probe* anonymous = worker.add_operator(std::make_unique<Probe>());
  worker.run();  // no heads: opens the operators and ends

  REQUIRE(shared.first_error().ok());
  REQUIRE(probe->opened);
  CHECK(probe->uid == "window#3");
  CHECK(probe->name == "usage per minute");
  CHECK(probe->index == 1);
  CHECK(probe->parallelism == 2);
  CHECK(probe->max_parallelism == 8);
  CHECK(probe->key_groups == ms::KeyGroupRange{4, 7});
  CHECK(probe->batch_size == 77);
  CHECK(probe->backend == shared.state_backend.get());
  CHECK(probe->share == 0);  // the memory backend keeps state in memory anyway
  CHECK_FALSE(probe->checkpointing);
  CHECK(probe->requested == 0);
  CHECK(probe->restored_id == 41);
  REQUIRE(probe->part == restored.find("window#3"));
  CHECK(probe->part->operator_states.at(1) == "state of worker 1");
  CHECK(probe->snapshot_op == "window#3");
  CHECK(probe->snapshot_worker == 1);
  CHECK(probe->snapshot_key_groups == ms::KeyGroupRange{4, 7});
  CHECK(shared.metrics.snapshot().at("probe_opened{operator=\"usage per minute\"}") == 1);

  // The runtime's own instances have no ids, hence no restored part.
  REQUIRE(anonymous->opened);
  CHECK(anonymous->uid.empty());
  CHECK(anonymous->part == nullptr);
  CHECK(anonymous->refused);
}

TEST_CASE("an operator that fails in open() fails the job with its status", "[runtime]") {
  struct Failing final : md::OperatorInstance {
    void open(md::OperatorContext& context) override {
      throw md::StatusError{absl::InvalidArgumentError(context.ids().name + ": bad")};
    }
  };
  ms::JobOptions options;
  md::WorkerShared shared(options);
  auto backend = ms::make_memory_state_backend();
  REQUIRE(backend.ok());
  shared.state_backend = *backend;
  shared.key_group_ranges.push_back(ms::key_group_range_for_worker(options.max_parallelism, 1, 0));
  md::Worker worker(shared, 0, 1);
  worker.add_operator(std::make_unique<Failing>(), md::OperatorIds{"f#1", "failing"});
  worker.run();
  CHECK(shared.first_error().code() == absl::StatusCode::kInvalidArgument);
  CHECK(shared.first_error().message() == "failing: bad");
  CHECK(shared.cancelled.load());
}
