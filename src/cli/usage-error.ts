// A mistake on the command line: exit status 2, a one-line message.
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
