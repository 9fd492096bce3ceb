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
// Overlapped with backward (DataParallelOptions::overlap): the model's backward reports the
// gradients that are final (GradientsReady, core/param.hpp), always a suffix of the packed buffer;
// ready() packs each bucket that lies wholly in it and starts its MPI_Iallreduce at once, last
// bucket first, and lets MPI progress the reductions in flight (Open MPI moves a non-blocking
// collective only inside MPI calls). finish() starts the rest, waits for all and unpacks; the loss
// then travels in a call of its own. Buckets are cut from the start of the buffer either way.
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
    unpack(module);
    if (loss) *loss = double(flat_[total]) / double(world_);
  }

  // Overlapped (see the file comment): ready() from the model's backward, finish() after it. A
  // collective, like operator(); every replica's backward reports the same tensors.
  template <class Module>
  void ready(Module& module, Index first_final_tensor) {
    if (offsets_.empty()) {  // the layout, on the first call
      module.for_each_param([&](Param<Scalar>& p) {
        offsets_.push_back(total_);
        total_ += std::size_t(p.size());
      });
      offsets_.push_back(total_);
      flat_.resize(total_ + 1);
      pending_ = (total_ + bucket_ - 1) / bucket_;
      requests_.reserve(pending_);
    }
    check<ShapeError>(first_final_tensor >= 0 && std::size_t(first_final_tensor) < offsets_.size(),
                      "GradientAllReduce::ready: tensor ", first_final_tensor, " of ", offsets_.size() - 1);
    const std::size_t final_from = offsets_[std::size_t(first_final_tensor)];
    for (; pending_ > 0 && (pending_ - 1) * bucket_ >= final_from; --pending_) start_bucket(module, pending_ - 1);
    int done = 0;
    if (!requests_.empty())
      check_mpi(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
  }
  template <class Module>
  void finish(Module& module, double& loss) {
    ready(module, 0);  // every gradient is final now
    check_mpi(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall (gradients)");
    requests_.clear();
    pending_ = (total_ + bucket_ - 1) / bucket_;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce (loss)");
    loss /= double(world_);
    unpack(module);
  }

  int world() const { return world_; }
  std::size_t bucket_scalars() const { return bucket_; }
  std::size_t reduced_scalars() const { return flat_.size(); }  // the gradients (and the loss)
  // MPI_Allreduce and MPI_Iallreduce calls on gradients so far (for tests: a few buckets, not one
  // per tensor).
  std::size_t bucket_calls() const { return buckets_; }

 private:
  // Every gradient from flat_, times 1/N.
  template <class Module>
  void unpack(Module& module) {
    const Scalar scale = Scalar(1) / Scalar(world_);
    std::size_t at = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      using Column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
      Eigen::Map<Column>(p.grad.data(), p.grad.size()) = Eigen::Map<const Column>(flat_.data() + at, p.grad.size()) * scale;
      at += std::size_t(p.grad.size());
    });
  }
  // Packs bucket b's gradients and starts its MPI_Iallreduce.
  template <class Module>
  void start_bucket(Module& module, std::size_t b) {
    const std::size_t lo = b * bucket_, hi = std::min(lo + bucket_, total_);
    std::size_t k = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      const std::size_t from = std::max(lo, offsets_[k]), to = std::min(hi, offsets_[k + 1]);
      if (from < to) std::copy_n(p.grad.data() + (from - offsets_[k]), to - from, flat_.data() + from);
      ++k;
    });
    requests_.emplace_back();
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, flat_.data() + lo, int(hi - lo), mpi_datatype<Scalar>(), MPI_SUM, comm_,
                             &requests_.back()),
              "MPI_Iallreduce (gradients)");
    ++buckets_;
  }

  MPI_Comm comm_;
  int world_ = 1;
  std::size_t bucket_ = 0;
  std::vector<Scalar> flat_;  // every gradient, in for_each_param order
  std::size_t buckets_ = 0;
  // Overlapped: tensor k at [offsets_[k], offsets_[k + 1]) of flat_; buckets [0, pending_) not
  // started yet; the reductions in flight.
  std::vector<std::size_t> offsets_;
  std::size_t total_ = 0, pending_ = 0;
  std::vector<MPI_Request> requests_;
};

}  // namespace seqgen
