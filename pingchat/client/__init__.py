"""The bundled terminal client."""
