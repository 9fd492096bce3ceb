// Uses seqgen::mpi (include/seqgen/distributed/) as a user would, under mpirun -np 2 or more: one
// Linear layer whose gradients differ by rank, reduced with ZeRO-1's ShardedAdamW, checked by hand:
// each rank's slice of the gradient is the mean over the ranks, and after the step every rank
// holds the same weights. Exits non-zero on a wrong answer.
#include <seqgen/distributed/sharded_adamw.hpp>
#include <seqgen/layers/linear.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  seqgen::MpiSession mpi(argc, argv, true);
  int status = 0;
  try {
    seqgen::Rng rng(42);  // the same weights on every rank
    seqgen::Linear<float> layer("fc", 3, 2, rng);
    // Rank r's gradient is r + 1 everywhere: the mean is (N + 1) / 2.
    layer.for_each_param([&](seqgen::Param<float>& p) { p.grad.setConstant(float(mpi.rank() + 1)); });
    seqgen::AdamW<float> optimizer;
    optimizer.init_state(layer);
    seqgen::ShardedAdamW<float> sharded(mpi.comm(), layer);
    sharded.take_state(optimizer);
    double loss = mpi.rank();
    sharded.reduce(layer, loss);
    const float mean = float(mpi.world() + 1) / 2;
    for (seqgen::Index i = 0; i < sharded.gradient().size(); ++i)
      if (sharded.gradient()(i) != mean) status = 1;
    if (loss != double(mpi.world() - 1) / 2) status = 1;
    sharded.step(layer, optimizer);
    std::vector<float> weights(layer.weight.value.data(), layer.weight.value.data() + 6), first(weights);
    MPI_Bcast(first.data(), 6, MPI_FLOAT, 0, mpi.comm());
    if (first != weights) status = 1;
    MPI_Allreduce(MPI_IN_PLACE, &status, 1, MPI_INT, MPI_MAX, mpi.comm());
    if (mpi.rank() == 0)
      std::printf("consumer_mpi: %d ranks, %zu of %zu AdamW values on rank 0: %s\n", mpi.world(),
                  sharded.slice_scalars(), sharded.total_scalars(), status == 0 ? "ok" : "WRONG");
  } catch (const std::exception& e) {
    mpi.abort(1, e.what());
  }
  return status;
}
