"""truss-cli: from a model directory to a managed, versioned deployment on your own machines.

Kept import-free: the replica-side model server imports this package inside every image.
"""

__version__ = "0.1.0"
