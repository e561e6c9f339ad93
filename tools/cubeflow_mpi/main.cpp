// cubeflow-mpi: survey mode over MPI ranks (docs/survey.md).
//
// Rank 0 reads the manifest, validates every cube (as `cubeflow run --manifest` does) and hands
// cubes out one at a time: a rank asks for the next cube when it has finished the last one
// (dynamic scheduling, MPI_Send/MPI_Recv). Every rank runs its cubes in child processes exactly
// as `cubeflow run` does (tools/survey), rank 0 too: it polls for requests while its own cube
// runs. Rank 0 writes the summary after every cube that starts or finishes, so it survives a job
// that is aborted; each cube's products are written atomically by the cube's own process.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "cubeflow/log.hpp"
#include "run_once.hpp"
#include "survey.hpp"

namespace {

using namespace cubeflow::tools;

constexpr int kTagReport = 1;  // rank -> 0: "" (ready) or the encoded result of its last cube
constexpr int kTagAssign = 2;  // 0 -> rank: the index of the next cube, -1 = no more
constexpr int kTagStarted = 3; // rank -> 0: the encoded row of the cube it has just started (its pid)

const char* kUsage =
    "usage: mpirun -np N cubeflow-mpi [run] PIPELINE --manifest CUBES.tsv [options of cubeflow run]\n"
    "  Runs PIPELINE once per line of the manifest, cubes handed to the ranks as they become free;\n"
    "  rank 0 writes the summary (--summary PATH; default MANIFEST_STEM.summary.tsv). docs/survey.md.\n";

std::string HostName() {
  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  return host;
}

int Coordinator(survey::Survey& s, int size) {
  const std::string host = HostName() + " rank 0";
  std::deque<size_t> queue;
  for (size_t i = 0; i < s.results.size(); ++i) {
    if (s.results[i].status == "pending") queue.push_back(i);
    else std::cerr << survey::FormatProgress(s, i);
  }
  survey::WriteSummary(s, std::cerr);
  int workers = size - 1;  // ranks that have not yet been told to stop
  bool own_running = false;
  while (workers > 0 || own_running || !queue.empty()) {
    bool busy = false;
    if (!own_running && !queue.empty()) {  // rank 0 works too
      const size_t i = queue.front();
      queue.pop_front();
      own_running = survey::StartCube(s, i, host) > 0;
      if (!own_running) std::cerr << survey::FormatProgress(s, i);
      survey::WriteSummary(s, std::cerr);
      busy = true;
    }
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
    if (flag && st.MPI_TAG == kTagStarted) {
      int len = 0;
      MPI_Get_count(&st, MPI_CHAR, &len);
      std::string msg(static_cast<size_t>(len), '\0');
      MPI_Recv(msg.data(), len, MPI_CHAR, st.MPI_SOURCE, kTagStarted, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      survey::Decode(s, msg);
      survey::WriteSummary(s, std::cerr);
      busy = true;
    } else if (flag && st.MPI_TAG == kTagReport) {
      int len = 0;
      MPI_Get_count(&st, MPI_CHAR, &len);
      std::string msg(static_cast<size_t>(len), '\0');
      MPI_Recv(msg.data(), len, MPI_CHAR, st.MPI_SOURCE, kTagReport, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (!msg.empty()) {
        const long i = survey::Decode(s, msg);
        if (i >= 0) std::cerr << survey::FormatProgress(s, static_cast<size_t>(i));
      }
      int next = -1;
      if (!queue.empty()) {
        next = static_cast<int>(queue.front());
        queue.pop_front();
        s.results[static_cast<size_t>(next)].status = "running";
        s.results[static_cast<size_t>(next)].host = "rank " + std::to_string(st.MPI_SOURCE);
      } else {
        --workers;
      }
      MPI_Send(&next, 1, MPI_INT, st.MPI_SOURCE, kTagAssign, MPI_COMM_WORLD);
      survey::WriteSummary(s, std::cerr);
      busy = true;
    }
    if (own_running) {
      const long i = survey::WaitCube(s, true);
      if (i >= 0) {
        own_running = false;
        std::cerr << survey::FormatProgress(s, static_cast<size_t>(i));
        survey::WriteSummary(s, std::cerr);
        busy = true;
      }
    }
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::cout << survey::FormatSummary(s) << "summary: " << s.summary_path << "\n";
  const int rc = survey::ExitStatus(s);
  if (rc != 0) std::cerr << "cubeflow-mpi: error: not every cube gave a usable product (see the summary)\n";
  return rc;
}

void Worker(survey::Survey& s, int rank) {
  const std::string host = HostName() + " rank " + std::to_string(rank);
  std::string report;  // "" first: ready for a cube
  while (true) {
    MPI_Send(report.data(), static_cast<int>(report.size()), MPI_CHAR, 0, kTagReport, MPI_COMM_WORLD);
    int next = -1;
    MPI_Recv(&next, 1, MPI_INT, 0, kTagAssign, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (next < 0 || static_cast<size_t>(next) >= s.results.size()) return;
    const size_t i = static_cast<size_t>(next);
    if (survey::StartCube(s, i, host) > 0) {
      const std::string started = survey::Encode(s, i);  // rank 0 records where it runs
      MPI_Send(started.data(), static_cast<int>(started.size()), MPI_CHAR, 0, kTagStarted, MPI_COMM_WORLD);
      while (survey::WaitCube(s, false) != static_cast<long>(i)) {
      }
    }
    report = survey::Encode(s, i);
  }
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Args a;
  std::string err;
  const int start = argc > 1 && std::string(argv[1]) == "run" ? 2 : 1;
  int rc = 0;
  if (!ParseArgs(argc, argv, start, a, err)) {
    if (rank == 0) std::cerr << "cubeflow-mpi: error: " << err << "\n" << kUsage;
    rc = 2;
  } else if (a.help) {
    if (rank == 0) std::cout << kUsage;
    MPI_Finalize();
    return 0;
  } else if (a.manifest.empty()) {
    if (rank == 0) std::cerr << "cubeflow-mpi: error: --manifest is required\n" << kUsage;
    rc = 2;
  } else if (a.jobs != 1) {
    if (rank == 0)
      std::cerr << "cubeflow-mpi: error: every rank runs one cube at a time; start more ranks instead of --jobs\n";
    rc = 2;
  }
  cubeflow::SetLogLevel(a.verbose >= 2 ? cubeflow::LogLevel::kDebug
                        : a.verbose == 1 ? cubeflow::LogLevel::kInfo : cubeflow::LogLevel::kWarn);
  survey::Survey s;
  if (rc == 0) {
    if (rank == 0) {
      rc = survey::Init(a, s, std::cerr);
      if (rc == 0) rc = survey::Validate(s, std::cerr);
    } else {
      std::ostringstream quiet;  // rank 0 reports the manifest's faults
      rc = survey::Init(a, s, quiet);
    }
  }
  // Load the plugins once per rank, as rank 0 has while validating the cubes: every cube's process
  // then starts with them loaded, on every rank alike, and no rank asks for work before then.
  cubeflow::PluginManager plugins;
  if (rc == 0 && rank != 0) LoadDefaultPlugins(plugins);
  int go = 0;  // every rank must be able to start, or none starts
  MPI_Allreduce(&rc, &go, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (go != 0) {
    if (rank == 0 && rc == 0)
      std::cerr << "cubeflow-mpi: error: another rank could not read " << a.manifest
                << " (is it on a file system every node sees?); nothing was run\n";
    MPI_Finalize();
    return rank == 0 ? go : 0;
  }
  if (rank == 0) rc = Coordinator(s, size);
  else Worker(s, rank);
  MPI_Finalize();
  return rc;
}
