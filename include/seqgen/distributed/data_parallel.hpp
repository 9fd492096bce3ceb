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
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "seqgen/distributed/gradient_allreduce.hpp"
#include "seqgen/distributed/mpi.hpp"
#include "seqgen/train/trainer.hpp"

namespace seqgen {

template <typename Model>
class DataParallel {
 public:
  using Scalar = typename Trainer<Model>::Scalar;

  // Makes `trainer` this rank's replica; the trainer must outlive this object, and this object
  // the trainer's use (its reduce_gradients calls back here).
  DataParallel(MPI_Comm comm, Trainer<Model>& trainer,
               std::size_t bucket_bytes = GradientAllReduce<Scalar>::kDefaultBucketBytes)
      : comm_(comm), trainer_(&trainer), reduce_(comm, bucket_bytes) {
    check_mpi(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm, &world_), "MPI_Comm_size");
    trainer.set_shard(rank_, world_);
    trainer.reduce_gradients = [this](Model& model, double& loss) { reduce_(model, loss); };
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() { trainer_->reduce_gradients = nullptr; }

  int rank() const { return rank_; }
  int world() const { return world_; }
  const GradientAllReduce<Scalar>& reducer() const { return reduce_; }

  // A collective: gathers the carried state of all B streams to rank 0, which saves the
  // checkpoint (Trainer::save; atomic). An error on rank 0 throws there only.
  void save(const std::string& path) {
    if constexpr (Trainer<Model>::kStreams) {
      typename Model::State all = trainer_->model.zero_state(trainer_->options.batch);
      typename Model::State mine = trainer_->state();
      Trainer<Model>::for_each_state_matrix(mine, all, [&](Mat<Scalar>& local, Mat<Scalar>& global) {
        // Columns are streams, so rank r's block of B/N columns is contiguous, in rank order.
        check_mpi(MPI_Gather(local.data(), int(local.size()), mpi_datatype<Scalar>(), global.data(),
                             int(local.size()), mpi_datatype<Scalar>(), 0, comm_),
                  "MPI_Gather (carried state)");
      });
      if (rank_ == 0) trainer_->save(path, &all);
    } else {
      if (rank_ == 0) trainer_->save(path);
    }
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
  int rank_ = 0, world_ = 1;
};

}  // namespace seqgen
