#include "cubeflow/runner.hpp"

#include "checkpoint.hpp"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "cubeflow/log.hpp"
#include "cubeflow/version.hpp"

namespace cubeflow {

int64_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream is(line.substr(6));
      int64_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

std::string RunSummary::FormatTable() const {
  std::ostringstream os;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-16s %-22s %7s %9s %7s %9s %9s %10s\n", "node", "type", "calls", "items",
                "failed", "busy s", "active s", "items/s");
  os << buf;
  for (const auto& n : nodes) {
    // items/s: the node's throughput while it runs (items per second of active wall time).
    double rate = n.active_seconds > 0 ? static_cast<double>(n.items) / n.active_seconds : 0.0;
    std::snprintf(buf, sizeof buf, "%-16s %-22s %7lld %9lld %7lld %9.3f %9.3f %10.1f\n", n.name.c_str(),
                  n.type.c_str(), static_cast<long long>(n.calls), static_cast<long long>(n.items),
                  static_cast<long long>(n.failed), n.busy_seconds, n.active_seconds, rate);
    os << buf;
  }
  std::snprintf(buf, sizeof buf, "wall time %.3f s on %d thread%s, peak memory %.1f MiB\n", wall_seconds, threads,
                threads == 1 ? "" : "s", static_cast<double>(peak_rss_bytes) / (1024.0 * 1024.0));
  os << buf;
  for (const auto& p : products) {
    os << (p.partial ? "partial product " : "product ") << p.path << ": " << p.usable << " of " << p.items
       << " usable" << (p.note.empty() ? "" : " (" + p.note + ")") << "\n";
  }
  if (items_resumed > 0 || items_checkpointed > 0)
    os << "checkpoints: " << items_resumed << " item result(s) resumed, " << items_checkpointed << " computed and stored\n";
  return os.str();
}

namespace {

namespace flow = tbb::flow;
using Clock = std::chrono::steady_clock;

/// Keeps one flow-control slot of a stream source while any message derived from the item lives.
struct Token {
  Token(flow::receiver<flow::continue_msg>* d, std::shared_ptr<std::atomic<bool>> alive)
      : decrementer(d), alive(std::move(alive)) {}
  ~Token() {
    if (*alive) decrementer->try_put(flow::continue_msg());
  }
  flow::receiver<flow::continue_msg>* decrementer;
  std::shared_ptr<std::atomic<bool>> alive;  ///< false once the limiters are torn down
};

struct Msg {
  int64_t key = -1;
  std::shared_ptr<const Data> data;
  std::shared_ptr<const std::string> failure;
  std::shared_ptr<Token> token;
};

struct RtNode;

struct Target {
  RtNode* node;
  int port;
  int slot;
};

struct Pump;

struct OutPort {
  const PortSpec* spec = nullptr;
  std::vector<Target> targets;
  std::atomic<bool> emitted{false};
  Pump* pump = nullptr;
};

struct InPort {
  const PortSpec* spec = nullptr;
  int n_edges = 0;
};

struct Item {
  int64_t key = -1;
  std::vector<std::vector<std::shared_ptr<const Data>>> in;  // [port][edge]
  std::vector<std::vector<bool>> got;
  int received = 0;
  std::shared_ptr<const std::string> failure;
  std::shared_ptr<Token> token;
};

struct Job {
  std::vector<Item> items;
  bool single_call = false;
  bool forward_failure = false;
};
using JobPtr = std::shared_ptr<Job>;

struct RtNode {
  const PipelineNode* def = nullptr;
  std::unique_ptr<checkpoint::Store> store;  // checkpointed nodes, when the run keeps checkpoints
  std::string static_key;                    // hash of type, plugin, parameters and the files they name
  std::string singles_key;                   // hash of the single inputs (set when they are complete)
  std::unique_ptr<Node> node;
  std::vector<InPort> inputs;
  std::vector<std::unique_ptr<OutPort>> outputs;
  int single_edges = 0, stream_edges = 0;
  size_t batch_size = 0;  // 0: not batched

  std::mutex mu;
  std::vector<std::vector<std::shared_ptr<const Data>>> singles;  // [port][edge]
  int singles_received = 0;
  bool singles_ready = false;
  std::unordered_map<int64_t, Item> pending;
  std::vector<Item> waiting;
  std::vector<Item> batch;
  std::unique_ptr<flow::function_node<JobPtr>> work;

  std::atomic<int64_t> calls{0}, items{0}, failed{0}, busy_ns{0}, resumed{0}, stored{0};
  bool finished = false;

  // Wall time during which at least one call runs (a parallel node's calls overlap): BusyTimer.
  std::mutex active_mu;
  int running = 0;
  std::chrono::steady_clock::time_point active_since;
  int64_t active_ns = 0;

  OutPort* FindOut(const std::string& name) {
    for (auto& o : outputs) if (o->spec->name == name) return o.get();
    return nullptr;
  }
  int FindIn(const std::string& name) const {
    for (size_t i = 0; i < inputs.size(); ++i) if (inputs[i].spec->name == name) return static_cast<int>(i);
    return -1;
  }
};

/// Times one call of a node: its duration adds to the node's busy time (summed over threads), and
/// the wall time during which at least one of its calls runs adds to its active time.
class BusyTimer {
 public:
  explicit BusyTimer(RtNode& n) : n_(n), t0_(std::chrono::steady_clock::now()) {
    std::lock_guard<std::mutex> lock(n_.active_mu);
    if (n_.running++ == 0) n_.active_since = t0_;
  }
  ~BusyTimer() {
    const auto t1 = std::chrono::steady_clock::now();
    n_.busy_ns += Nanoseconds(t1 - t0_);
    std::lock_guard<std::mutex> lock(n_.active_mu);
    if (--n_.running == 0) n_.active_ns += Nanoseconds(t1 - n_.active_since);
  }
  BusyTimer(const BusyTimer&) = delete;
  BusyTimer& operator=(const BusyTimer&) = delete;

 private:
  static int64_t Nanoseconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }
  RtNode& n_;
  std::chrono::steady_clock::time_point t0_;
};

struct Pump {
  RtNode* owner = nullptr;
  OutPort* port = nullptr;
  std::shared_ptr<StreamSource> source;
  std::unique_ptr<flow::input_node<Msg>> input;
  std::unique_ptr<flow::limiter_node<Msg>> limiter;
  std::unique_ptr<flow::function_node<Msg>> dispatch;
  std::atomic<int64_t> produced{0};
  int64_t size_hint = -1;
  std::atomic<bool> active{false}, done{false};
};

class Runner;

class CtxImpl final : public ProcessContext {
 public:
  CtxImpl(Runner* r, RtNode* n, Job* job, bool aborted) : runner_(r), n_(n), job_(job), aborted_(aborted) {}
  /// Keeps a copy of what is emitted per item (for the checkpoint of a checkpointed node).
  void Capture(std::vector<std::vector<checkpoint::Emission>>* per_item) { captured_ = per_item; }
  size_t size() const override { return job_ && !job_->single_call ? job_->items.size() : 1; }
  int64_t key(size_t i) const override { return HasItems() ? ItemAt(i).key : -1; }
  bool failed(size_t i) const override { return HasItems() && ItemAt(i).failure != nullptr; }
  std::string failure(size_t i) const override {
    return HasItems() && ItemAt(i).failure ? *ItemAt(i).failure : std::string();
  }
  std::shared_ptr<const Data> InputData(const std::string& port, size_t item) const override {
    auto v = InputsOf(port, item);
    return v.empty() ? nullptr : v.front();
  }
  std::vector<std::shared_ptr<const Data>> InputsOf(const std::string& port, size_t item) const override;
  bool Connected(const std::string& port) const override {
    int p = n_->FindIn(port);
    return p >= 0 && n_->inputs[p].n_edges > 0;
  }
  void Emit(const std::string& port, std::shared_ptr<const Data> data, size_t item) override;
  void EmitItem(const std::string& port, int64_t key, std::shared_ptr<const Data> data) override;
  void EmitStream(const std::string& port, std::shared_ptr<StreamSource> source) override;
  const std::string& node_name() const override { return n_->def->name; }
  const std::string& node_type() const override { return n_->def->type; }
  const RunInfo& run() const override;
  bool aborted() const override { return aborted_; }
  int threads() const override;
  void Log(LogLevel level, const std::string& message) const override {
    cubeflow::Log(level, n_->def->name, message);
  }
  void ReportProduct(const ProductReport& report) override;

 private:
  bool HasItems() const { return job_ && !job_->single_call; }
  const Item& ItemAt(size_t i) const {
    if (i >= job_->items.size()) throw Error("item index " + std::to_string(i) + " out of range");
    return job_->items[i];
  }
  OutPort* Out(const std::string& port, const Data* data) const {
    OutPort* op = n_->FindOut(port);
    if (!op) throw Error("node has no output port '" + port + "'");
    if (data && op->spec->type != "any" && op->spec->type != data->type())
      throw Error("output '" + port + "' is declared '" + op->spec->type + "' but was given '" + data->type() + "'");
    return op;
  }
  Runner* runner_;
  std::vector<std::vector<checkpoint::Emission>>* captured_ = nullptr;
  RtNode* n_;
  Job* job_;
  bool aborted_;
};

class Runner {
 public:
  Runner(const Pipeline& pl, const PluginManager& plugins, const RunOptions& opt)
      : pl_(pl), plugins_(plugins), opt_(opt) {}

  RunSummary Run();

  void Send(OutPort* op, const Msg& m) {
    if (stopped_) return;
    for (const auto& t : op->targets) Deliver(*t.node, t.port, t.slot, m);
  }
  void ActivatePump(RtNode& n, OutPort* op, std::shared_ptr<StreamSource> src) {
    if (!op->pump) throw Error("stream output '" + op->spec->name + "' cannot take a lazy stream here (the node has stream inputs; emit per item)");
    if (op->pump->active.exchange(true)) throw Error("EmitStream called twice on output '" + op->spec->name + "'");
    (void)n;
    op->pump->source = std::move(src);
    op->pump->size_hint = op->pump->source->SizeHint();
    if (op->targets.empty()) {  // nothing downstream: don't pull at all
      op->pump->done = true;
      return;
    }
    op->pump->input->activate();
  }
  const RunInfo& run_info() const { return run_info_; }
  int threads() const { return threads_; }
  bool stopped() const { return stopped_; }

 private:
  void Build();
  void Deliver(RtNode& n, int port, int slot, const Msg& m);
  void Enqueue(RtNode& n, Item&& it, std::vector<JobPtr>& jobs);
  void Execute(RtNode& n, const JobPtr& job);
  // Checkpoints (checkpoint.hpp).
  void OpenCheckpoints();
  std::string ItemKey(RtNode& n, const Item& it);
  std::vector<std::string> ResumeFromCheckpoint(RtNode& n, Job& job);
  void WriteCheckpoint(RtNode& n, const std::vector<std::string>& keys,
                       const std::vector<std::vector<checkpoint::Emission>>& captured);
  void ForwardFailure(RtNode& n, const Item& it);
  void Fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(err_mu_);
      if (error_.empty()) error_ = message;
    }
    if (!stopped_.exchange(true) && graph_) graph_->cancel();
  }
  std::string Where(const RtNode& n) const { return "node '" + n.def->name + "' (" + n.def->type + ")"; }
  // Finishing, node by node in topological order (FinishAll); each step returns false when
  // the run was stopped meanwhile, and the rest is then finished as aborted.
  void FinishAll(bool aborted);
  bool Settle();
  bool FlushInputs(RtNode& n);
  bool SinglesArrived(RtNode& n);
  void FlagUnjoinedItems(RtNode& n, std::vector<JobPtr>& jobs);
  void TakePartialBatch(RtNode& n, std::vector<JobPtr>& jobs);
  void CallFinish(RtNode& n, bool aborted);
  void CheckStalledStreams();
  // Run() in steps.
  void RecordRunInfo();
  void CreateNodes();
  void StartSources();
  void StopProgress(std::thread& progress);
  void WatchInterrupt();
  void StopWatch(std::thread& watcher);
  RunSummary Summarise();
  void ReleaseHeldItems();
  void ProgressLoop();

  const Pipeline& pl_;
  const PluginManager& plugins_;
  RunOptions opt_;
  RunInfo run_info_;
  int threads_ = 1;
  int64_t max_in_flight_ = 0;
  bool flag_errors_ = false;
  std::unique_ptr<flow::graph> graph_;
  std::vector<std::unique_ptr<RtNode>> nodes_;
  std::vector<std::unique_ptr<Pump>> pumps_;
  std::atomic<bool> stopped_{false};
  std::shared_ptr<std::atomic<bool>> limiters_alive_ = std::make_shared<std::atomic<bool>>(true);
  std::mutex err_mu_;
  std::string error_;
  std::mutex products_mu_;
  std::vector<ProductReport> products_;
  std::atomic<int> interrupted_by_{0};
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;
  std::mutex progress_mu_;
  std::condition_variable progress_cv_;
  bool progress_stop_ = false;
  friend class CtxImpl;
};

std::vector<std::shared_ptr<const Data>> CtxImpl::InputsOf(const std::string& port, size_t item) const {
  int p = n_->FindIn(port);
  if (p < 0) throw Error("node has no input port '" + port + "'");
  if (n_->inputs[p].spec->kind == PortKind::kSingle) {
    std::vector<std::shared_ptr<const Data>> v;
    for (const auto& d : n_->singles[p]) if (d) v.push_back(d);
    return v;
  }
  if (!HasItems()) throw Error("stream input '" + port + "' read outside a per-item call");
  std::vector<std::shared_ptr<const Data>> v;
  for (const auto& d : ItemAt(item).in[p]) if (d) v.push_back(d);
  return v;
}

void CtxImpl::Emit(const std::string& port, std::shared_ptr<const Data> data, size_t item) {
  OutPort* op = Out(port, data.get());
  if (op->spec->kind == PortKind::kSingle) {
    if (op->emitted.exchange(true)) throw Error("single output '" + port + "' emitted more than once");
    runner_->Send(op, Msg{-1, std::move(data), nullptr, nullptr});
    return;
  }
  if (!HasItems())
    throw Error("stream output '" + port + "' emitted without an item key; use EmitItem() or EmitStream()");
  const Item& it = ItemAt(item);
  if (captured_ && item < captured_->size()) (*captured_)[item].push_back({port, data});
  runner_->Send(op, Msg{it.key, std::move(data), nullptr, it.token});
}

void CtxImpl::EmitItem(const std::string& port, int64_t key, std::shared_ptr<const Data> data) {
  OutPort* op = Out(port, data.get());
  if (op->spec->kind != PortKind::kStream) throw Error("EmitItem on single output '" + port + "'; use Emit()");
  runner_->Send(op, Msg{key, std::move(data), nullptr, nullptr});
}

void CtxImpl::EmitStream(const std::string& port, std::shared_ptr<StreamSource> source) {
  OutPort* op = Out(port, nullptr);
  if (op->spec->kind != PortKind::kStream) throw Error("EmitStream on single output '" + port + "'");
  if (!source) throw Error("EmitStream on '" + port + "' with a null source");
  runner_->ActivatePump(*n_, op, std::move(source));
}

void CtxImpl::ReportProduct(const ProductReport& report) {
  std::lock_guard<std::mutex> lock(runner_->products_mu_);
  runner_->products_.push_back(report);
}

const RunInfo& CtxImpl::run() const { return runner_->run_info(); }
int CtxImpl::threads() const { return runner_->threads(); }

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void Runner::Build() {
  graph_ = std::make_unique<flow::graph>();
  std::map<std::string, RtNode*> by_name;
  size_t max_batch = 1;
  for (const auto& def : pl_.nodes) {
    auto n = std::make_unique<RtNode>();
    n->def = &def;
    for (const auto& p : def.spec->inputs()) n->inputs.push_back({&p, 0});
    for (const auto& p : def.spec->outputs()) {
      auto op = std::make_unique<OutPort>();
      op->spec = &p;
      n->outputs.push_back(std::move(op));
    }
    if (!def.spec->batch_param().empty()) {
      n->batch_size = static_cast<size_t>(std::max<int64_t>(1, def.params.GetInt(def.spec->batch_param())));
      max_batch = std::max(max_batch, n->batch_size);
    }
    by_name[def.name] = n.get();
    nodes_.push_back(std::move(n));
  }
  for (const auto& e : pl_.edges) {
    RtNode* from = by_name.at(e.from_node);
    RtNode* to = by_name.at(e.to_node);
    int ip = to->FindIn(e.to_port);
    OutPort* op = from->FindOut(e.from_port);
    int slot = to->inputs[ip].n_edges++;
    op->targets.push_back({to, ip, slot});
    if (to->inputs[ip].spec->kind == PortKind::kSingle) to->single_edges++;
    else to->stream_edges++;
  }
  max_in_flight_ = opt_.max_in_flight > 0 ? opt_.max_in_flight : pl_.settings.max_in_flight;
  if (max_in_flight_ <= 0) max_in_flight_ = std::max<int64_t>(256, 4 * static_cast<int64_t>(max_batch));
  if (max_in_flight_ < 2 * static_cast<int64_t>(max_batch)) {
    Log(LogLevel::kWarn, "", "max_in_flight " + std::to_string(max_in_flight_) + " is below twice the largest batch (" +
                                 std::to_string(max_batch) + "); raised to " + std::to_string(2 * max_batch));
    max_in_flight_ = 2 * static_cast<int64_t>(max_batch);
  }

  for (auto& up : nodes_) {
    RtNode& n = *up;
    n.singles.resize(n.inputs.size());
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (n.inputs[i].spec->kind == PortKind::kSingle) n.singles[i].resize(n.inputs[i].n_edges);
    n.singles_ready = n.single_edges == 0;
    const size_t conc = n.def->spec->concurrency() == Concurrency::kSerial ? flow::serial : flow::unlimited;
    RtNode* np = &n;
    n.work = std::make_unique<flow::function_node<JobPtr>>(*graph_, conc, [this, np](const JobPtr& job) {
      Execute(*np, job);
      return flow::continue_msg();
    });
    // Lazy stream outputs for nodes that are not per-item themselves.
    if (n.stream_edges == 0) {
      for (auto& op : n.outputs) {
        if (op->spec->kind != PortKind::kStream) continue;
        auto pump = std::make_unique<Pump>();
        Pump* pp = pump.get();
        pp->owner = np;
        pp->port = op.get();
        op->pump = pp;
        pp->limiter = std::make_unique<flow::limiter_node<Msg>>(*graph_, static_cast<size_t>(max_in_flight_));
        pp->input = std::make_unique<flow::input_node<Msg>>(*graph_, [this, pp](tbb::flow_control& fc) -> Msg {
          if (stopped_ || !pp->source) { pp->done = true; fc.stop(); return {}; }
          Msg m;
          bool ok = false;
          try {
            ok = pp->source->Next(m.key, m.data);
          } catch (const std::exception& e) {
            Fail(Where(*pp->owner) + " failed producing stream '" + pp->port->spec->name + "' after item " +
                 std::to_string(pp->produced.load()) + ": " + e.what());
          }
          if (!ok || stopped_) {
            pp->done = true;
            pp->source.reset();
            fc.stop();
            return {};
          }
          pp->produced++;
          m.token = std::make_shared<Token>(&pp->limiter->decrementer(), limiters_alive_);
          return m;
        });
        pp->dispatch = std::make_unique<flow::function_node<Msg>>(*graph_, flow::unlimited, [this, pp](const Msg& m) {
          Send(pp->port, m);
          return flow::continue_msg();
        });
        flow::make_edge(*pp->input, *pp->limiter);
        flow::make_edge(*pp->limiter, *pp->dispatch);
        pumps_.push_back(std::move(pump));
      }
    }
  }
}

void Runner::Deliver(RtNode& n, int port, int slot, const Msg& m) {
  std::vector<JobPtr> jobs;
  {
    std::lock_guard<std::mutex> lock(n.mu);
    const InPort& ip = n.inputs[port];
    if (ip.spec->kind == PortKind::kSingle) {
      if (!n.singles[port][slot]) n.singles_received++;
      n.singles[port][slot] = m.data;
      if (!n.singles_ready && n.singles_received == n.single_edges) {
        n.singles_ready = true;
        if (n.stream_edges == 0) {
          auto j = std::make_shared<Job>();
          j->single_call = true;
          jobs.push_back(j);
        } else {
          for (auto& it : n.waiting) Enqueue(n, std::move(it), jobs);
          n.waiting.clear();
        }
      }
    } else {
      auto [iter, inserted] = n.pending.try_emplace(m.key);
      Item& it = iter->second;
      if (inserted) {
        it.key = m.key;
        it.in.resize(n.inputs.size());
        it.got.resize(n.inputs.size());
        for (size_t i = 0; i < n.inputs.size(); ++i) {
          if (n.inputs[i].spec->kind != PortKind::kStream) continue;
          it.in[i].resize(n.inputs[i].n_edges);
          it.got[i].resize(n.inputs[i].n_edges, false);
        }
      }
      if (it.got[port][slot]) {
        Fail(Where(n) + ": item " + std::to_string(m.key) + " arrived twice on input '" + ip.spec->name +
             "' (an upstream node emitted the same key twice)");
        return;
      }
      it.got[port][slot] = true;
      it.in[port][slot] = m.data;
      if (m.failure && !it.failure) it.failure = m.failure;
      if (m.token && !it.token) it.token = m.token;
      if (++it.received == n.stream_edges) {
        Item done = std::move(it);
        n.pending.erase(iter);
        if (!n.singles_ready) {
          done.token.reset();  // waiting on a single input: don't hold the source's flow slots
          n.waiting.push_back(std::move(done));
        } else {
          Enqueue(n, std::move(done), jobs);
        }
      }
    }
  }
  for (auto& j : jobs) n.work->try_put(j);
}

void Runner::Enqueue(RtNode& n, Item&& it, std::vector<JobPtr>& jobs) {
  if (it.failure && !n.def->spec->accepts_failures()) {
    auto j = std::make_shared<Job>();
    j->forward_failure = true;
    j->items.push_back(std::move(it));
    jobs.push_back(j);
    return;
  }
  if (n.batch_size > 0) {
    n.batch.push_back(std::move(it));
    if (n.batch.size() >= n.batch_size) {
      auto j = std::make_shared<Job>();
      j->items = std::move(n.batch);
      n.batch.clear();
      jobs.push_back(j);
    }
    return;
  }
  auto j = std::make_shared<Job>();
  j->items.push_back(std::move(it));
  jobs.push_back(j);
}

void Runner::ForwardFailure(RtNode& n, const Item& it) {
  n.failed++;
  bool forwarded = false;
  for (auto& op : n.outputs) {
    if (op->spec->kind != PortKind::kStream) continue;
    if (!op->targets.empty()) forwarded = true;
    Send(op.get(), Msg{it.key, nullptr, it.failure, it.token});
  }
  if (!forwarded)
    Log(LogLevel::kWarn, n.def->name, "item " + std::to_string(it.key) + " failed upstream and has no consumer that records failures: " + *it.failure);
}

void Runner::Execute(RtNode& n, const JobPtr& job) {
  if (stopped_) return;
  if (job->forward_failure) {
    ForwardFailure(n, job->items.front());
    return;
  }
  std::vector<std::string> ckpt_keys;
  std::vector<std::vector<checkpoint::Emission>> captured;
  if (n.store && !job->single_call) {
    ckpt_keys = ResumeFromCheckpoint(n, *job);
    if (job->items.empty()) return;  // every item came from the checkpoint
    captured.resize(job->items.size());
  }
  CtxImpl ctx(this, &n, job.get(), false);
  if (!ckpt_keys.empty()) ctx.Capture(&captured);
  std::string what;
  try {
    BusyTimer timer(n);
    n.node->Process(ctx);
  } catch (const std::exception& e) {
    what = e.what();
    if (what.empty()) what = "exception with no message";
  } catch (...) {
    what = "unknown exception";
  }
  n.calls++;
  n.items += job->single_call ? 1 : static_cast<int64_t>(job->items.size());
  if (what.empty()) {
    if (!ckpt_keys.empty()) WriteCheckpoint(n, ckpt_keys, captured);
    return;
  }
  if (job->single_call) {
    Fail(Where(n) + " failed: " + what);
    return;
  }
  std::string keys;
  for (size_t i = 0; i < job->items.size() && i < 8; ++i) keys += (i ? "," : "") + std::to_string(job->items[i].key);
  if (job->items.size() > 8) keys += ",...";
  const std::string msg = Where(n) + " failed on " + (job->items.size() == 1 ? "bin " : "bins ") + keys + ": " + what;
  if (!flag_errors_) {
    Fail(msg);
    return;
  }
  Log(LogLevel::kWarn, n.def->name, msg + " (flagged; on_error: flag)");
  auto failure = std::make_shared<const std::string>(msg);
  for (auto& it : job->items) {
    it.failure = failure;
    ForwardFailure(n, it);
  }
}

/// Opens the checkpoint file of every checkpointed node and hashes what its results depend on
/// besides the item: type, plugin and version, every parameter, and the content of the input
/// files its path and model parameters name.
void Runner::OpenCheckpoints() {
  if (opt_.checkpoint_dir.empty()) return;
  for (auto& up : nodes_) {
    RtNode& n = *up;
    if (!n.def->spec->checkpointed() || !n.def->spec->IsPerItem()) continue;
    std::error_code ec;
    std::filesystem::create_directories(opt_.checkpoint_dir, ec);
    auto store = checkpoint::Store::Open(opt_.checkpoint_dir + "/" + n.def->name + ".ckpt", opt_.resume);
    if (!store.ok()) throw Error(Where(n) + ": " + store.status().message());
    n.store = std::move(*store);
    checkpoint::Hasher h;
    h.Str(n.def->type);
    if (const auto* o = plugins_.registry().OriginOf(n.def->type)) h.Str(o->plugin).Str(o->version);
    for (const auto& [k, v] : n.def->params.values()) h.Str(k).Str(FormatValue(v));
    for (const auto& ps : n.def->spec->params()) {
      if ((ps.type() != ParamType::kPath && ps.type() != ParamType::kModel) || ps.is_output()) continue;
      const auto* v = std::get_if<std::string>(&n.def->params.values().at(ps.name()));
      if (!v || v->empty()) continue;
      const std::string file = ps.type() == ParamType::kModel ? ModelRef::Parse(*v).File() : *v;
      std::error_code fe;
      if (std::filesystem::is_regular_file(file, fe)) checkpoint::HashFile(file, h);
      if (ps.type() == ParamType::kModel && std::filesystem::is_regular_file(file + ".yaml", fe))
        checkpoint::HashFile(file + ".yaml", h);  // the model's metadata
    }
    n.static_key = h.Digest();
  }
}

/// The key of one item of a checkpointed node; "" if some input cannot be hashed.
std::string Runner::ItemKey(RtNode& n, const Item& it) {
  checkpoint::Hasher h;
  h.Bytes(n.static_key.data(), n.static_key.size());
  {
    std::lock_guard<std::mutex> lock(n.mu);
    if (n.singles_key.empty()) {
      checkpoint::Hasher hs;
      bool hashable = true;
      for (const auto& port : n.singles)
        for (const auto& d : port) hashable = hashable && d && checkpoint::HashData(*d, hs);
      n.singles_key = hashable ? hs.Digest() : "-";  // "-": a single input whose content cannot be hashed
    }
    if (n.singles_key == "-") return "";  // results could depend on what the key cannot see
    h.Bytes(n.singles_key.data(), n.singles_key.size());
  }
  h.U64(static_cast<uint64_t>(it.key));
  for (const auto& port : it.in)
    for (const auto& d : port) {
      if (!d) continue;
      if (!checkpoint::HashData(*d, h)) return "";
    }
  return h.Digest();
}

/// Emits the stored results of the job's items that have them and removes those items from the
/// job; returns the keys of the items left (in order), for WriteCheckpoint.
std::vector<std::string> Runner::ResumeFromCheckpoint(RtNode& n, Job& job) {
  std::vector<Item> left;
  std::vector<std::string> keys;
  std::vector<checkpoint::Emission> found;
  for (auto& it : job.items) {
    std::string key = ItemKey(n, it);
    if (opt_.resume && !key.empty() && n.store->Find(key, found)) {
      bool ok = true;
      for (const auto& e : found) ok = ok && n.FindOut(e.port) && n.FindOut(e.port)->spec->kind == PortKind::kStream;
      if (ok) {
        for (auto& e : found) Send(n.FindOut(e.port), Msg{it.key, std::move(e.data), nullptr, it.token});
        n.resumed++;
        n.items++;
        continue;
      }
    }
    keys.push_back(std::move(key));
    left.push_back(std::move(it));
  }
  job.items = std::move(left);
  return keys;
}

void Runner::WriteCheckpoint(RtNode& n, const std::vector<std::string>& keys,
                             const std::vector<std::vector<checkpoint::Emission>>& captured) {
  for (size_t i = 0; i < keys.size() && i < captured.size(); ++i) {
    if (keys[i].empty() || captured[i].empty()) continue;
    bool ok = true;
    for (const auto& e : captured[i]) ok = ok && e.data && checkpoint::Serializable(*e.data);
    if (!ok) continue;
    Status st = n.store->Append(keys[i], captured[i]);
    if (!st.ok()) {
      Log(LogLevel::kWarn, n.def->name, st.message() + "; results are no longer checkpointed");
      n.store.reset();
      return;
    }
    n.stored++;
  }
}

void Runner::FinishAll(bool aborted) {
  if (aborted) graph_->wait_for_all();
  for (auto& up : nodes_) {
    RtNode& n = *up;
    if (n.finished) continue;
    n.finished = true;
    if (!aborted && !FlushInputs(n)) return FinishAll(true);
    CallFinish(n, aborted);
    if (!aborted && !Settle()) return FinishAll(true);
  }
  if (!aborted) CheckStalledStreams();
}

/// Waits until the graph is idle; false if the run was stopped meanwhile.
bool Runner::Settle() {
  graph_->wait_for_all();
  return !stopped_;
}

/// Before node n finishes (everything upstream has): its single inputs must have arrived, items
/// still waiting for a join partner are flagged as failed, and the partial last batch runs.
bool Runner::FlushInputs(RtNode& n) {
  if (!Settle()) return false;
  std::vector<JobPtr> jobs;
  {
    std::lock_guard<std::mutex> lock(n.mu);
    if (!n.singles_ready && !SinglesArrived(n)) return false;
    FlagUnjoinedItems(n, jobs);
    TakePartialBatch(n, jobs);
  }
  for (auto& j : jobs) n.work->try_put(j);
  return Settle();
}

/// Fails the run (and returns false) if a single input of n never received its message.
bool Runner::SinglesArrived(RtNode& n) {
  for (size_t p = 0; p < n.inputs.size(); ++p) {
    if (n.inputs[p].spec->kind != PortKind::kSingle) continue;
    for (size_t s = 0; s < n.singles[p].size(); ++s) {
      if (n.singles[p][s]) continue;
      std::string from;
      for (const auto& e : pl_.edges)
        if (e.to_node == n.def->name && e.to_port == n.inputs[p].spec->name) from = e.from_node + "." + e.from_port;
      Fail(Where(n) + ": input '" + n.inputs[p].spec->name + "' never received data (" + from + " emitted nothing)");
      return false;
    }
  }
  return !stopped_;
}

void Runner::FlagUnjoinedItems(RtNode& n, std::vector<JobPtr>& jobs) {
  if (n.pending.empty()) return;
  Log(LogLevel::kWarn, n.def->name,
      std::to_string(n.pending.size()) + " item(s) were missing an input from some edge and are flagged as failed");
  for (auto& [key, it] : n.pending) {
    it.failure = std::make_shared<const std::string>("missing input on some stream edge of " + Where(n));
    Enqueue(n, std::move(it), jobs);
  }
  n.pending.clear();
}

void Runner::TakePartialBatch(RtNode& n, std::vector<JobPtr>& jobs) {
  if (n.batch.empty()) return;
  auto j = std::make_shared<Job>();
  j->items = std::move(n.batch);
  n.batch.clear();
  jobs.push_back(j);
}

/// Node::Finish; after an abort its errors are logged, not raised (the first error stands).
void Runner::CallFinish(RtNode& n, bool aborted) {
  CtxImpl ctx(this, &n, nullptr, aborted);
  try {
    BusyTimer timer(n);
    n.node->Finish(ctx);
  } catch (const std::exception& e) {
    if (aborted)
      Log(LogLevel::kError, n.def->name, std::string("while finishing after an error: ") + e.what());
    else
      Fail(Where(n) + " failed while finishing: " + e.what());
  }
}

void Runner::CheckStalledStreams() {
  for (const auto& p : pumps_) {
    if (p->active && !p->done)
      Fail(Where(*p->owner) + ": stream '" + p->port->spec->name + "' stalled after " +
           std::to_string(p->produced.load()) + " items (a downstream join is waiting for items that never come; "
           "check that joined streams carry the same bin ids)");
  }
}

void Runner::ProgressLoop() {
  const auto t0 = Clock::now();
  std::unique_lock<std::mutex> lock(progress_mu_);
  while (!progress_cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return progress_stop_; })) {
    std::string line;
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%6.1fs]", std::chrono::duration<double>(Clock::now() - t0).count());
    line = buf;
    for (const auto& p : pumps_) {
      if (!p->active) continue;
      line += " " + p->owner->def->name + "." + p->port->spec->name + " " + std::to_string(p->produced.load());
      if (p->size_hint > 0) line += "/" + std::to_string(p->size_hint);
    }
    for (const auto& n : nodes_) {
      if (n->stream_edges == 0) continue;
      line += " | " + n->def->name + " " + std::to_string(n->items.load());
    }
    if (line.size() > 160) line.resize(160);
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
  }
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

RunSummary Runner::Run() {
  const auto t0 = Clock::now();
  threads_ = opt_.threads > 0 ? opt_.threads : tbb::info::default_concurrency();
  flag_errors_ = pl_.settings.on_error == "flag";
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, static_cast<size_t>(threads_));
  RecordRunInfo();
  try {
    Build();
    OpenCheckpoints();
    CreateNodes();
  } catch (const std::exception& e) {
    RunSummary failed;
    failed.error = e.what();
    failed.ok = false;
    return failed;
  }
  std::thread progress, watcher;
  if (opt_.progress && isatty(2)) progress = std::thread([this] { ProgressLoop(); });
  if (opt_.interrupt) watcher = std::thread([this] { WatchInterrupt(); });
  StartSources();
  FinishAll(false);
  graph_->wait_for_all();
  StopWatch(watcher);
  StopProgress(progress);
  RunSummary summary = Summarise();
  ReleaseHeldItems();
  summary.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  summary.peak_rss_bytes = PeakRssBytes();
  return summary;
}

/// What products record about the run: version, file, start time, nodes and their parameters,
/// and the input files (existing files named by path parameters of nodes that are not sinks).
void Runner::RecordRunInfo() {
  run_info_.cubeflow_version = kVersion;
  run_info_.pipeline_file = pl_.file;
  run_info_.started_utc = UtcNow();
  for (const auto& def : pl_.nodes) {
    RunInfo::NodeInfo ni;
    ni.name = def.name;
    ni.type = def.type;
    if (const auto* o = plugins_.registry().OriginOf(def.type)) {
      ni.plugin = o->plugin;
      ni.plugin_version = o->version;
    }
    for (const auto& [k, v] : def.params.values()) ni.params[k] = FormatValue(v);
    const bool is_sink = def.spec->outputs().empty();
    for (const auto& ps : def.spec->params()) {
      if (is_sink || ps.is_output()) continue;
      std::string p;
      if (ps.type() == ParamType::kPath) p = def.params.GetString(ps.name());
      else if (ps.type() == ParamType::kModel) p = ModelRef::Parse(def.params.GetString(ps.name())).File();
      else continue;
      std::error_code ec;
      if (!p.empty() && std::filesystem::is_regular_file(p, ec)) run_info_.input_files.push_back(p);
    }
    run_info_.nodes.push_back(std::move(ni));
  }
}

/// Builds every node instance from its spec's factory; throws naming the node on failure.
void Runner::CreateNodes() {
  for (auto& n : nodes_) {
    try {
      BusyTimer timer(*n);
      n->node = n->def->spec->factory()(n->def->params);
    } catch (const std::exception& e) {
      throw Error(Where(*n) + ": " + e.what());
    }
    if (!n->node) throw Error(Where(*n) + ": factory returned no node");
  }
}

/// Sources are the nodes with no connected input at all: each is called once.
void Runner::StartSources() {
  for (auto& n : nodes_) {
    if (n->single_edges == 0 && n->stream_edges == 0) {
      auto j = std::make_shared<Job>();
      j->single_call = true;
      n->work->try_put(j);
    }
  }
}

void Runner::StopProgress(std::thread& progress) {
  if (!progress.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    progress_stop_ = true;
  }
  progress_cv_.notify_all();
  progress.join();
}

/// Stops the run when RunOptions::interrupt becomes non-zero (a signal arrived): the graph is
/// cancelled as after an error, and the sinks finish as aborted.
void Runner::WatchInterrupt() {
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (!watch_cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return watch_stop_; })) {
    const int sig = opt_.interrupt->load();
    if (sig == 0) continue;
    interrupted_by_ = sig;
    Fail("interrupted by signal " + std::to_string(sig) + (sig == 2 ? " (SIGINT)" : sig == 15 ? " (SIGTERM)" : "") +
         "; the run stopped and its products are partial");
    return;
  }
}

void Runner::StopWatch(std::thread& watcher) {
  if (!watcher.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_stop_ = true;
  }
  watch_cv_.notify_all();
  watcher.join();
}

RunSummary Runner::Summarise() {
  RunSummary summary;
  summary.ok = error_.empty();
  summary.error = error_;
  summary.products = products_;
  for (const auto& n : nodes_) {
    summary.items_resumed += n->resumed;
    summary.items_checkpointed += n->stored;
  }
  summary.interrupted_by = interrupted_by_.load();
  summary.threads = threads_;
  for (const auto& n : nodes_) {
    NodeStats s;
    s.name = n->def->name;
    s.type = n->def->type;
    s.calls = n->calls;
    s.items = n->items;
    s.failed = n->failed;
    s.busy_seconds = static_cast<double>(n->busy_ns.load()) * 1e-9;
    s.active_seconds = static_cast<double>(n->active_ns) * 1e-9;
    summary.nodes.push_back(s);
  }
  return summary;
}

/// Releases items still held (after an abort) before the limiters their tokens point to, then
/// the sources and the nodes.
void Runner::ReleaseHeldItems() {
  for (auto& n : nodes_) {
    std::lock_guard<std::mutex> lock(n->mu);
    n->pending.clear();
    n->waiting.clear();
    n->batch.clear();
    n->singles.clear();
  }
  for (auto& p : pumps_) p->source.reset();
  *limiters_alive_ = false;
  pumps_.clear();
  for (auto& n : nodes_) n->node.reset();
}

}  // namespace

RunSummary RunPipeline(const Pipeline& pipeline, const PluginManager& plugins, const RunOptions& options) {
  Runner r(pipeline, plugins, options);
  return r.Run();
}

}  // namespace cubeflow
