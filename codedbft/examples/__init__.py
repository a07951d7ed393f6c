"""Small importable examples (``docs/byo.md``): a user's model, dataset and code, by import path.

``codedbft train --model codedbft.examples.custom:TinyNet --dataset codedbft.examples.custom:blobs``
"""
