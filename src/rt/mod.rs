//! The engine: context switch, stacks, tasks, the scheduler, the driver (reactor and
//! timer heap) and the blocking pool.

pub(crate) mod blocking;
pub(crate) mod context;
pub(crate) mod reactor;
pub(crate) mod scheduler;
pub(crate) mod stack;
pub(crate) mod timer_queue;
