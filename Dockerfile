# One image for every Flywheel function: the scientific stack is larger than a zip may be.
# There is no CMD: each function sets its own handler as the image command (infra/components/functions.py).
FROM public.ecr.aws/lambda/python:3.12

# Dependencies first, so a code change rebuilds only the layers below.
COPY requirements.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir -r ${LAMBDA_TASK_ROOT}/requirements.txt

COPY shared/ ${LAMBDA_TASK_ROOT}/shared/
COPY functions/ ${LAMBDA_TASK_ROOT}/functions/
