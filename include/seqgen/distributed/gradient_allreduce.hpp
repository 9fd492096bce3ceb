// Synchronous data parallelism's one collective: every replica's gradients summed over the
// replicas with MPI_Allreduce, then divided by the world size N, so that each replica holds
//   g = (1/N) Σ_r g_r,
// the gradient of the mean loss over the global batch (each g_r is of its replica's mean over
// B/N sequences). The loss is averaged the same way.
//
// The gradients are packed into one contiguous buffer, reduced in a few large buckets (not one
// call per tensor: each call costs a latency, ~2 µs over shared memory, ~10–50 µs on a network),
// and unpacked with the 1/N scale; the loss travels as one more scalar of the last bucket. A ring all-reduce moves 2(N−1)/N × the gradient bytes in and
// out of each replica (docs/distributed.md).
//
// Every replica must end with bit-identical gradients, or their weights drift apart. Open MPI's
// all-reduce algorithms (ring, recursive doubling, with a commutative sum) give every rank the
// same result; tests/mpi checks it on every test step.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "seqgen/core/param.hpp"
#include "seqgen/distributed/mpi.hpp"

namespace seqgen {

template <typename Scalar>
class GradientAllReduce {
 public:
  static constexpr std::size_t kDefaultBucketBytes = std::size_t(8) << 20;  // 8 MiB

  explicit GradientAllReduce(MPI_Comm comm, std::size_t bucket_bytes = kDefaultBucketBytes) : comm_(comm) {
    check<ConfigError>(bucket_bytes >= sizeof(Scalar), "GradientAllReduce: bucket_bytes must hold one scalar, got ",
                       bucket_bytes);
    bucket_ = bucket_bytes / sizeof(Scalar);
    check_mpi(MPI_Comm_size(comm, &world_), "MPI_Comm_size");
  }

  // Replaces every Param::grad of `module` and `loss` by their means over the replicas. A
  // collective: every replica calls it, with the same module shape. The loss rides in the last
  // bucket (as a Scalar, the type forward returns it in), so it costs no call of its own.
  template <class Module>
  void operator()(Module& module, double& loss) {
    reduce(module, &loss);
  }
  // The same for the gradients alone.
  template <class Module>
  void reduce(Module& module, double* loss = nullptr) {
    std::size_t total = 0;
    module.for_each_param([&](Param<Scalar>& p) { total += std::size_t(p.grad.size()); });
    const std::size_t count = total + (loss ? 1 : 0);
    flat_.resize(count);  // allocates on the first call only
    std::size_t at = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      std::copy_n(p.grad.data(), p.grad.size(), flat_.data() + at);
      at += std::size_t(p.grad.size());
    });
    if (loss) flat_[total] = Scalar(*loss);
    for (std::size_t first = 0; first < count; first += bucket_) {
      const std::size_t n = std::min(bucket_, count - first);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, flat_.data() + first, int(n), mpi_datatype<Scalar>(), MPI_SUM, comm_),
                "MPI_Allreduce (gradients)");
      ++buckets_;
    }
    const Scalar scale = Scalar(1) / Scalar(world_);
    at = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      using Column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
      Eigen::Map<Column>(p.grad.data(), p.grad.size()) = Eigen::Map<const Column>(flat_.data() + at, p.grad.size()) * scale;
      at += std::size_t(p.grad.size());
    });
    if (loss) *loss = double(flat_[total]) / double(world_);
  }

  int world() const { return world_; }
  std::size_t bucket_scalars() const { return bucket_; }
  std::size_t reduced_scalars() const { return flat_.size(); }  // the gradients (and the loss)
  // MPI_Allreduce calls on gradients so far (for tests: a few buckets, not one per tensor).
  std::size_t bucket_calls() const { return buckets_; }

 private:
  MPI_Comm comm_;
  int world_ = 1;
  std::size_t bucket_ = 0;
  std::vector<Scalar> flat_;  // every gradient, in for_each_param order
  std::size_t buckets_ = 0;
};

}  // namespace seqgen
