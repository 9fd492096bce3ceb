// The MPI process group seqgen's data-parallel training runs in: starting and ending MPI, the
// rank and world size, the MPI datatype of a scalar, and ending the whole job from one rank.
//
// Only a program that links MPI includes this (the CMake target seqgen::mpi, which exists when
// find_package(MPI) succeeds); the rest of seqgen never names MPI. Collectives are called from the
// main thread only (MPI_THREAD_FUNNELED): the OpenMP teams of a step never touch MPI.
#pragma once

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "seqgen/core/error.hpp"

namespace seqgen {

// An MPI call failed; the message names the call and MPI's own description of the error.
struct MpiError : Error {
  using Error::Error;
};

inline void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw MpiError(std::string(call) + " failed: " + std::string(text, std::size_t(length)));
}

template <typename Scalar>
MPI_Datatype mpi_datatype();
template <>
inline MPI_Datatype mpi_datatype<float>() { return MPI_FLOAT; }
template <>
inline MPI_Datatype mpi_datatype<double>() { return MPI_DOUBLE; }

// True when a launcher (mpirun/mpiexec of Open MPI, MPICH or Slurm's PMI) started this process,
// so that a program built with MPI still runs as a plain single process, without MPI, otherwise.
inline bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

// Starts MPI in its constructor (unless `use_mpi` is false: then rank 0 of 1, and no MPI at all)
// and ends it in its destructor. One per program, in main(), before any other MPI use.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv, bool use_mpi = launched_by_mpi()) : active_(use_mpi) {
    if (!active_) return;
    int provided = 0;
    check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    // Errors come back as codes (check_mpi turns them into exceptions) instead of ending the job
    // silently, so that the rank that met one can say what it was before abort().
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    if (active_) MPI_Finalize();
  }

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  MPI_Comm comm() const { return MPI_COMM_WORLD; }

  // Ends the whole job with `status`, after printing `message` (if not empty) with this rank's
  // number to stderr. The other ranks are killed by the launcher even inside a collective, so a
  // failure on one node never leaves the rest waiting. Without MPI: std::exit(status).
  [[noreturn]] void abort(int status, const std::string& message) const {
    if (!message.empty()) std::fprintf(stderr, "rank %d of %d: %s\n", rank_, world_, message.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    if (active_ && world_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
    std::exit(status);
  }

 private:
  bool active_ = false;
  int rank_ = 0, world_ = 1;
};

}  // namespace seqgen
