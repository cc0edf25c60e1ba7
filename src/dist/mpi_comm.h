// The Communicator over MPI (OpenMPI from Debian): `mpirun -np N jinx ...` starts N processes;
// rank 0 runs the command, the others serve it as tensor-parallel workers.
#pragma once

#include <memory>

#include "core/comm.h"

namespace jinx::dist {

// Whether this process was started by an MPI launcher with more than one rank (read from the
// launcher's environment, before MPI is initialized).
bool launched_by_mpi();

// Initializes MPI at the first call and returns the world communicator (MPI is finalized at
// exit). jinx::Error when MPI cannot start.
std::shared_ptr<Communicator> mpi_world();

}  // namespace jinx::dist
