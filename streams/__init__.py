"""Long-running stream processors: the physics engine and worker, Faust apps, the gateway."""
