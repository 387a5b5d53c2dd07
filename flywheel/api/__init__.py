"""The producer and operator API: ``Client`` for enqueueing, ``ops`` for inspecting and acting on jobs, ``views`` for what they return."""
