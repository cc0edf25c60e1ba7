#include "dist/mpi_comm.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "core/check.h"

namespace jinx::dist {

namespace {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("MPI ", what, " failed: ", std::string(msg, static_cast<size_t>(len)));
}

class MpiComm final : public Communicator {
 public:
  MpiComm() {
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
    // Errors come back as codes (and become jinx::Error) instead of aborting every rank.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override { MPI_Finalize(); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* data, size_t n) override {
    for (size_t done = 0; done < n;) {  // MPI counts are ints
      const int count = static_cast<int>(std::min<size_t>(n - done, INT_MAX));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + done, count, MPI_FLOAT, MPI_SUM,
                              MPI_COMM_WORLD),
                "all-reduce");
      done += static_cast<size_t>(count);
    }
  }
  void broadcast(void* data, size_t n, int root) override {
    auto* p = static_cast<char*>(data);
    for (size_t done = 0; done < n;) {
      const int count = static_cast<int>(std::min<size_t>(n - done, INT_MAX));
      check_mpi(MPI_Bcast(p + done, count, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
      done += static_cast<size_t>(count);
    }
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && std::atoi(v) > 1) return true;
  }
  return false;
}

std::shared_ptr<Communicator> mpi_world() {
  static const std::shared_ptr<Communicator> world = std::make_shared<MpiComm>();
  return world;
}

}  // namespace jinx::dist
