"""Long work run by ``arena worker``: the queue (:mod:`arena.jobs.queue`), the worker loop
(:mod:`arena.jobs.worker`) and the job kinds (:mod:`arena.jobs.kinds`)."""
