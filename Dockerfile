# Image for the stream workers (used by docker-compose.kafka.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY setup.py ./
COPY records ./records
COPY preagg ./preagg
COPY detectors ./detectors
COPY models ./models
COPY streams ./streams
COPY sim ./sim
COPY cli ./cli
RUN pip install --no-cache-dir .
USER 65534
ENTRYPOINT ["patrol"]
