// Synchronous data-parallel training of a Trainer on MPI (docs/distributed.md).
//
//   MpiSession mpi(argc, argv);
//   Trainer<Model> trainer(...);                 // or Trainer<Model>::load(path, data) on every rank
//   DataParallel<Model> dp(mpi.comm(), trainer);  // shards the batch, reduces the gradients
//   while (...) trainer.step();
//   dp.save(path);                                // a collective; rank 0 writes
//
// Each of the N ranks reads the same global batch (the trainer's generator and stream cursor stay
// equal on every rank) and computes on its B/N sequences; GradientAllReduce averages the gradients
// and the loss; every rank clips by the same global norm and takes the same AdamW step, so the
// weights, moments and generator stay identical on every rank and a checkpoint is what one
// process would write. A recurrent model's carried state stays with the rank whose streams it
// belongs to, and is gathered to rank 0 only to be saved.
//
// With DataParallelOptions::overlap, each bucket's all-reduce starts during backward as soon as its
// gradients are final (GradientAllReduce::ready, fed by the model's GradientsReady callback).
//
// With DataParallelOptions::shard_optimizer (ZeRO stage 1, distributed/sharded_adamw.hpp) the
// AdamW moments are sharded instead: each rank receives its slice of the mean gradient
// (reduce-scatter), clips it by the global norm, updates its slice of the weights and keeps the
// moments of that slice only; an all-gather then gives every rank every weight. The trainer's own
// AdamW keeps its options and step count but no moments; save() gathers them to rank 0, so the
// checkpoint is the same either way and resumes with or without sharding, on any number of ranks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "seqgen/distributed/gradient_allreduce.hpp"
#include "seqgen/distributed/mpi.hpp"
#include "seqgen/distributed/sharded_adamw.hpp"
#include "seqgen/train/trainer.hpp"

namespace seqgen {

struct DataParallelOptions {
  bool shard_optimizer = false;  // ZeRO-1: each rank keeps the AdamW moments of its slice only
  // Start each bucket's all-reduce during backward, as soon as its gradients are final
  // (GradientAllReduce::ready); not with shard_optimizer.
  bool overlap = false;
  std::size_t bucket_bytes = std::size_t(8) << 20;  // gradients move in buckets of this size
};

template <typename Model>
class DataParallel {
 public:
  using Scalar = typename Trainer<Model>::Scalar;

  // Makes `trainer` this rank's replica; the trainer must outlive this object, and this object
  // the trainer's use (its hooks call back here). Every rank must pass the same options. With
  // shard_optimizer, the trainer's moments (fresh or loaded, whole on every rank) are cut to this
  // rank's slice; they stay sharded after this object is gone.
  DataParallel(MPI_Comm comm, Trainer<Model>& trainer, const DataParallelOptions& options = {})
      : comm_(comm), trainer_(&trainer), reduce_(comm, options.bucket_bytes) {
    check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm, &world_), "MPI_Comm_size");
    check<ConfigError>(!(options.overlap && options.shard_optimizer),
                       "DataParallel: overlap is not implemented with shard_optimizer");
    trainer.set_shard(rank_, world_);
    if (options.overlap) {
      trainer.gradients_ready = [this](Model& model, Index first) { reduce_.ready(model, first); };
      trainer.reduce_gradients = [this](Model& model, double& loss) { reduce_.finish(model, loss); };
      return;
    }
    if (!options.shard_optimizer) {
      trainer.reduce_gradients = [this](Model& model, double& loss) { reduce_(model, loss); };
      return;
    }
    sharded_.emplace(comm, trainer.model, options.bucket_bytes);
    sharded_->take_state(trainer.optimizer());
    trainer.reduce_gradients = [this](Model& model, double& loss) { sharded_->reduce(model, loss); };
    trainer.clip_sharded = [this](double max_norm) { return sharded_->clip_grad_norm(max_norm); };
    trainer.step_sharded = [this](Model& model, AdamW<Scalar>& optimizer) { sharded_->step(model, optimizer); };
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    trainer_->reduce_gradients = nullptr;
    trainer_->gradients_ready = nullptr;
    trainer_->clip_sharded = nullptr;
    trainer_->step_sharded = nullptr;
  }

  int rank() const { return rank_; }
  int world() const { return world_; }
  const GradientAllReduce<Scalar>& reducer() const { return reduce_; }
  // The sharded optimizer (shard_optimizer), or nullptr.
  const ShardedAdamW<Scalar>* sharded() const { return sharded_ ? &*sharded_ : nullptr; }

  // A collective: gathers the carried state of all B streams (and, with shard_optimizer, the AdamW
  // moments) to rank 0, which saves the checkpoint (Trainer::save; atomic). An error on rank 0
  // throws there only.
  void save(const std::string& path) {
    typename Model::State all;
    if constexpr (Trainer<Model>::kStreams) {
      all = trainer_->model.zero_state(trainer_->options.batch);
      typename Model::State mine = trainer_->state();
      Trainer<Model>::for_each_state_matrix(mine, all, [&](Mat<Scalar>& local, Mat<Scalar>& global) {
        // Columns are streams, so rank r's block of B/N columns is contiguous, in rank order.
        check_mpi(MPI_Gather(local.data(), int(local.size()), mpi_datatype<Scalar>(), global.data(),
                             int(local.size()), mpi_datatype<Scalar>(), 0, comm_),
                  "MPI_Gather (carried state)");
      });
    }
    AdamW<Scalar>& optimizer = trainer_->optimizer();
    if (sharded_) {
      if (rank_ == 0) optimizer.init_state(trainer_->model);  // whole moments, for the save only
      sharded_->gather_state(optimizer, 0);
    }
    if (rank_ != 0) return;
    try {
      trainer_->save(path, Trainer<Model>::kStreams ? &all : nullptr);
    } catch (...) {
      if (sharded_) optimizer.release_state();
      throw;
    }
    if (sharded_) optimizer.release_state();
  }

  // A collective: x[i] becomes the largest of every rank's x[i] (a signal number, an elapsed
  // time), so that decisions taken from them are the same on every rank.
  void max(double* x, int n) const {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_MAX, comm_), "MPI_Allreduce (max)");
  }

 private:
  MPI_Comm comm_;
  Trainer<Model>* trainer_;
  GradientAllReduce<Scalar> reduce_;
  std::optional<ShardedAdamW<Scalar>> sharded_;
  int rank_ = 0, world_ = 1;
};

}  // namespace seqgen
