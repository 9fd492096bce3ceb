// ZeRO stage 1 (Rajbhandari et al., 2020): AdamW with its moments sharded over N data-parallel
// replicas. Instead of every replica holding m and v for all P parameters, replica r holds them
// for its slice of about P/N, so the optimizer state per replica falls from 2P to 2P/N scalars:
//
//   1. reduce: every gradient packed into one buffer of P scalars, in for_each_param order, and
//      summed over the replicas with MPI_Reduce_scatter in buckets, each bucket cut into N nearly
//      equal pieces, piece r to replica r. Replica r's slice is its pieces of every bucket, in
//      order: it receives g = (1/N) Σ_q g_q on its slice only. The loss and Σ g² over the slice
//      travel in one MPI_Allreduce of two doubles: every replica learns the mean loss and the
//      global norm ‖g‖ of the whole mean gradient (not of a shard), which clipping needs.
//   2. clip: g = c g on the slice, c = max_norm / (‖g‖ + 1e-6) when below 1 (optim/clip.hpp).
//   3. step: Adam::update on the slice (its m, v, the values of the parameters it covers), then
//      MPI_Allgatherv over the same buckets: every replica gets every updated parameter.
//
// The slice of a bucket is one contiguous range of the packed buffer, so it may cover the end of
// one parameter and the start of the next; a parameter larger than a bucket spans several. The
// update is element-wise, so the cut changes nothing: the result is AdamW's step on one process
// (to the rounding of the sums). Traffic: a ring reduce-scatter and all-gather move (N−1)/N × the
// gradient bytes each, the all-reduce's 2(N−1)/N in all.
//
// Checkpoints hold the whole moments, as one process writes them: gather_state collects them to
// one rank, take_state cuts this replica's slice out of whole moments (a fresh or a loaded
// optimizer's), so a run saved on N replicas resumes on any number.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "seqgen/core/param.hpp"
#include "seqgen/distributed/mpi.hpp"
#include "seqgen/optim/adam.hpp"
#include "seqgen/optim/clip.hpp"

namespace seqgen {

template <typename Scalar>
class ShardedAdamW {
 public:
  static constexpr std::size_t kDefaultBucketBytes = std::size_t(8) << 20;  // 8 MiB, as GradientAllReduce

  // Lays out the slices for the parameters of `module` (the same module shape on every replica).
  // Allocates the packed buffer (P), the slice's gradient and moments (3 × about P/N).
  template <class Module>
  explicit ShardedAdamW(MPI_Comm comm, Module& module, std::size_t bucket_bytes = kDefaultBucketBytes) : comm_(comm) {
    check<ConfigError>(bucket_bytes >= sizeof(Scalar) && bucket_bytes / sizeof(Scalar) <= std::size_t(INT_MAX),
                       "ShardedAdamW: bucket_bytes must hold between one and 2^31 - 1 scalars, got ", bucket_bytes);
    check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm, &world_), "MPI_Comm_size");
    module.for_each_param([&](Param<Scalar>& p) {
      offsets_.push_back(total_);
      total_ += std::size_t(p.size());
    });
    offsets_.push_back(total_);
    const std::size_t bucket = bucket_bytes / sizeof(Scalar), N = std::size_t(world_);
    for (std::size_t first = 0; first < total_; first += bucket) {
      const std::size_t len = std::min(bucket, total_ - first);
      Bucket b;
      b.first = first;
      b.shard_at = size_;
      for (std::size_t r = 0; r < N; ++r) {
        const std::size_t begin = len * r / N, end = len * (r + 1) / N;
        b.counts.push_back(int(end - begin));
        b.displs.push_back(int(begin));
      }
      // This replica's piece, cut at the parameters' borders: what step() updates.
      const std::size_t begin = first + std::size_t(b.displs[rank_]), end = begin + std::size_t(b.counts[rank_]);
      for (std::size_t k = 0; k + 1 < offsets_.size(); ++k) {
        const std::size_t lo = std::max(begin, offsets_[k]), hi = std::min(end, offsets_[k + 1]);
        if (lo < hi) segments_.push_back({k, lo - offsets_[k], size_ + (lo - begin), hi - lo});
      }
      size_ += std::size_t(b.counts[rank_]);
      buckets_.push_back(std::move(b));
    }
    flat_.resize(total_);
    grad_.setZero(Index(size_), 1);
    exp_avg_.setZero(Index(size_), 1);
    exp_avg_sq_.setZero(Index(size_), 1);
  }

  // Step 1 above: this replica's slice of the mean gradient, the mean of `loss` over the
  // replicas, and the global norm (grad_norm()). A collective. The module's own gradients are
  // left as they were (this replica's).
  template <class Module>
  void reduce(Module& module, double& loss) {
    pack(module, [](Param<Scalar>& p) -> Mat<Scalar>& { return p.grad; });
    for (const Bucket& b : buckets_)
      check_mpi(MPI_Reduce_scatter(flat_.data() + b.first, grad_.data() + b.shard_at, b.counts.data(),
                                   mpi_datatype<Scalar>(), MPI_SUM, comm_),
                "MPI_Reduce_scatter (gradients)");
    grad_ *= Scalar(1) / Scalar(world_);
    double sums[2] = {detail::grad_squared_norm(grad_), loss};
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce (norm and loss)");
    norm_ = std::sqrt(sums[0]);
    loss = sums[1] / double(world_);
  }

  // Step 2: clips the slice by the global norm (max_norm 0: no clipping) and returns the norm;
  // a non-finite norm leaves the slice as it is (clip_grad_norm).
  double clip_grad_norm(double max_norm) {
    check<ConfigError>(std::isfinite(max_norm) && max_norm >= 0,
                       "ShardedAdamW::clip_grad_norm: max_norm must be finite and >= 0, got ", max_norm);
    if (max_norm > 0 && std::isfinite(norm_)) {
      const double c = max_norm / (norm_ + 1e-6);
      if (c < 1) detail::scale_grad(grad_, static_cast<Scalar>(c));
    }
    return norm_;
  }

  // Step 3: the step of `optimizer` (its options; its step count advances) on this replica's
  // slice, then every replica receives every parameter. A collective. The optimizer's own
  // moments are not used (take_state released them).
  template <class Module>
  void step(Module& module, Adam<Scalar>& optimizer) {
    const typename Adam<Scalar>::StepScalars s = optimizer.begin_step();
    std::size_t k = 0, next = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      for (; next < segments_.size() && segments_[next].param == k; ++next) {
        const Segment& g = segments_[next];
        optimizer.update(s, p.decay, p.value.data() + g.in_param, grad_.data() + g.at, exp_avg_.data() + g.at,
                         exp_avg_sq_.data() + g.at, Index(g.size));
        std::copy_n(p.value.data() + g.in_param, g.size, flat_.data() + offsets_[k] + g.in_param);
      }
      ++k;
    });
    for (const Bucket& b : buckets_)
      check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, flat_.data() + b.first, b.counts.data(),
                               b.displs.data(), mpi_datatype<Scalar>(), comm_),
                "MPI_Allgatherv (parameters)");
    unpack(module, [](Param<Scalar>& p) -> Mat<Scalar>& { return p.value; });
  }

  // Copies this replica's slice of the moments out of `optimizer`, whose moments must be whole
  // (init_state, or a checkpoint loaded; the same on every replica), then releases them there.
  void take_state(Adam<Scalar>& optimizer) {
    for (int which = 0; which < 2; ++which) {
      pack_state(optimizer, which);
      Mat<Scalar>& mine = which == 0 ? exp_avg_ : exp_avg_sq_;
      for (const Bucket& b : buckets_)
        std::copy_n(flat_.data() + b.first + b.displs[rank_], b.counts[rank_], mine.data() + b.shard_at);
    }
    optimizer.release_state();
  }

  // A collective: replica `root` receives the whole moments into `optimizer`, which it must have
  // sized for the module first (init_state); the other replicas' optimizers are not read.
  void gather_state(Adam<Scalar>& optimizer, int root) {
    for (int which = 0; which < 2; ++which) {
      const Mat<Scalar>& mine = which == 0 ? exp_avg_ : exp_avg_sq_;
      for (const Bucket& b : buckets_)
        check_mpi(MPI_Gatherv(mine.data() + b.shard_at, b.counts[rank_], mpi_datatype<Scalar>(), flat_.data() + b.first,
                              b.counts.data(), b.displs.data(), mpi_datatype<Scalar>(), root, comm_),
                  "MPI_Gatherv (AdamW moments)");
      if (rank_ != root) continue;
      std::size_t i = 0;
      optimizer.for_each_state([&](const std::string& name, Mat<Scalar>& m) {
        const std::size_t k = i / 2;
        check<ShapeError>(k + 1 < offsets_.size() && std::size_t(m.size()) == offsets_[k + 1] - offsets_[k],
                          "ShardedAdamW::gather_state: the optimizer's '", name, "' does not match parameter ", k);
        if (int(i++ % 2) == which) std::copy_n(flat_.data() + offsets_[k], m.size(), m.data());
      });
      check<ShapeError>(i == 2 * (offsets_.size() - 1), "ShardedAdamW::gather_state: the optimizer holds ", i,
                        " moments, expected ", 2 * (offsets_.size() - 1), " (init_state first)");
    }
  }

  // The norm of the whole mean gradient, from the last reduce().
  double grad_norm() const { return norm_; }
  // This replica's slice of the mean gradient (clipped after clip_grad_norm), and its moments.
  const Mat<Scalar>& gradient() const { return grad_; }
  const Mat<Scalar>& exp_avg() const { return exp_avg_; }
  const Mat<Scalar>& exp_avg_sq() const { return exp_avg_sq_; }
  // Where the slice lies in the packed parameters: calls visit(first, count, at) for each bucket,
  // `count` scalars from packed index `first` being gradient()[at, at + count).
  template <class Visit>
  void for_each_piece(Visit&& visit) const {
    for (const Bucket& b : buckets_)
      visit(b.first + std::size_t(b.displs[rank_]), std::size_t(b.counts[rank_]), b.shard_at);
  }
  std::size_t total_scalars() const { return total_; }  // P
  std::size_t slice_scalars() const { return size_; }   // about P/N
  std::size_t buckets() const { return buckets_.size(); }
  // Bytes of AdamW state this replica holds: m and v of its slice.
  std::size_t state_bytes() const { return 2 * size_ * sizeof(Scalar); }

 private:
  struct Bucket {
    std::size_t first = 0;     // its first scalar in the packed buffer
    std::size_t shard_at = 0;  // where this replica's piece of it starts in the slice
    std::vector<int> counts, displs;  // each replica's piece: its length and start in the bucket
  };
  struct Segment {  // a piece of the slice inside one parameter
    std::size_t param, in_param, at, size;
  };

  template <class Module, class Field>
  void pack(Module& module, Field field) {
    std::size_t k = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      const Mat<Scalar>& x = field(p);
      check<ShapeError>(k + 1 < offsets_.size() && std::size_t(x.size()) == offsets_[k + 1] - offsets_[k],
                        "ShardedAdamW: parameter ", k, " ('", p.name, "') has ", x.size(),
                        " values, not those of the module it was laid out for");
      std::copy_n(x.data(), x.size(), flat_.data() + offsets_[k++]);
    });
    check<ShapeError>(k + 1 == offsets_.size(), "ShardedAdamW: the module has ", k, " parameters, expected ",
                      offsets_.size() - 1);
  }
  template <class Module, class Field>
  void unpack(Module& module, Field field) {
    std::size_t k = 0;
    module.for_each_param([&](Param<Scalar>& p) {
      Mat<Scalar>& x = field(p);
      std::copy_n(flat_.data() + offsets_[k++], x.size(), x.data());
    });
  }
  // Packs moment `which` (0: m, 1: v) of every parameter from the optimizer into flat_.
  void pack_state(Adam<Scalar>& optimizer, int which) {
    std::size_t i = 0;
    optimizer.for_each_state([&](const std::string& name, Mat<Scalar>& m) {
      const std::size_t k = i / 2;
      check<ShapeError>(k + 1 < offsets_.size() && std::size_t(m.size()) == offsets_[k + 1] - offsets_[k],
                        "ShardedAdamW::take_state: the optimizer's '", name, "' does not match parameter ", k);
      if (int(i++ % 2) == which) std::copy_n(m.data(), m.size(), flat_.data() + offsets_[k]);
    });
    check<ShapeError>(i == 2 * (offsets_.size() - 1), "ShardedAdamW::take_state: the optimizer holds ", i,
                      " moments, expected ", 2 * (offsets_.size() - 1), " (whole moments: init_state or a checkpoint)");
  }

  MPI_Comm comm_;
  int rank_ = 0, world_ = 1;
  std::size_t total_ = 0, size_ = 0;  // P, and this replica's slice
  std::vector<std::size_t> offsets_;  // parameter k is packed at [offsets_[k], offsets_[k + 1])
  std::vector<Bucket> buckets_;
  std::vector<Segment> segments_;     // in packed order
  std::vector<Scalar> flat_;          // packed gradients, then parameters, then moments to save
  Mat<Scalar> grad_, exp_avg_, exp_avg_sq_;  // (slice, 1)
  double norm_ = 0;
};

}  // namespace seqgen
