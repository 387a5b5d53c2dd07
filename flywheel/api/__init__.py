"""The producer and operator API.

``Client`` enqueues, ``ops`` inspects and acts on jobs, ``views`` are what they return.
"""
