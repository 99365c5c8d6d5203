import type { Dispatcher } from 'undici';

/**
 * One try of a request against one dispatcher. Kept apart from endpoint selection and response
 * streaming so that retries and circuit breaking wrap it without touching either. undici throws
 * synchronously for requests it refuses to send (an invalid header value); that becomes a
 * handler error like any other.
 */
export function dispatchAttempt(
  dispatcher: Dispatcher,
  options: Dispatcher.DispatchOptions,
  handler: Dispatcher.DispatchHandler,
): boolean {
  try {
    return dispatcher.dispatch(options, handler);
  } catch (err) {
    (handler as { onError?(e: Error): void }).onError?.(err as Error);
    return false;
  }
}
