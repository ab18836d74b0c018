"""Apache Airflow provider for FlowMesh (hook, deferrable operator, trigger): to come."""

__all__: list[str] = []
__version__ = "0.1.0"
